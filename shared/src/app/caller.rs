//! Who is asking: the caller a verified token (or API Gateway's authorizer) names.
//!
//! Roles are a closed set: a token's role names are matched exactly, and a name this
//! ledger does not know (`"pharmacy,admin"`, `"Admin"`) is ignored, never split or
//! folded into a known one.

use std::collections::BTreeSet;

/// The longest `sub` a caller may have; it is stored on every event the caller causes.
pub const SUB_MAX: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Operators: may act on any wallet, card, payment or claim.
    Admin,
    /// Files prescription claims into pharmacy wallets it owns.
    Pharmacy,
    /// Issues and manages the cards its own sponsor wallets pay for, and decides their insurance claims.
    Insurer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Pharmacy, Role::Insurer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Pharmacy => "pharmacy",
            Role::Insurer => "insurer",
        }
    }

    /// The role with exactly this name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    roles: BTreeSet<Role>,
}

impl Caller {
    /// A caller named `sub` (1 to [`SUB_MAX`] visible characters) with the known
    /// roles among `roles`. `Err` says what is wrong with `sub`.
    pub fn new<S: AsRef<str>>(sub: &str, roles: impl IntoIterator<Item = S>) -> Result<Caller, String> {
        let length = sub.chars().count();
        if length == 0 || length > SUB_MAX {
            return Err(format!("sub must be 1 to {SUB_MAX} characters"));
        }
        if sub.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("sub must be visible characters (no spaces or control characters)".into());
        }
        Ok(Caller { sub: sub.to_string(), roles: roles.into_iter().filter_map(|name| Role::parse(name.as_ref())).collect() })
    }

    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.roles.iter().copied()
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(Role::Admin)
    }

    /// The owner, or an admin.
    pub fn may_act_for(&self, owner_id: &str) -> bool {
        self.sub == owner_id || self.is_admin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_match_exactly_and_unknown_ones_are_ignored() {
        let odd = Caller::new("mallory", ["pharmacy,admin", "Admin", " admin", "insurer"]).unwrap();
        assert_eq!(odd.roles().collect::<Vec<_>>(), vec![Role::Insurer]);
        assert!(!odd.is_admin());
        assert!(Caller::new("ops", ["admin"]).unwrap().is_admin());
    }

    #[test]
    fn a_sub_is_one_to_128_visible_characters() {
        assert!(Caller::new("a", [""; 0]).is_ok());
        assert!(Caller::new(&"é".repeat(128), [""; 0]).is_ok());
        for bad in [String::new(), "x".repeat(129), "al ice".into(), "alice\n".into(), "\u{0}".into()] {
            assert!(Caller::new(&bad, [""; 0]).is_err(), "{bad:?}");
        }
    }
}
