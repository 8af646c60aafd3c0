//! Old events stay readable: a chain of upcasters turns an event stored under an
//! older schema version into the shape the code reads today, at read time, for
//! every reader (the command side, projections, rebuild, verify, the Kinesis
//! consumers): they all decode through [`EventEnvelope::decode`](crate::envelope::EventEnvelope::decode).
//! Stored events are never rewritten.
//!
//! Each aggregate has one schema version ([`Aggregate::SCHEMA_VERSION`](crate::aggregate::Aggregate::SCHEMA_VERSION)),
//! written on every new event. To change an event's shape:
//! 1. raise the aggregate's `SCHEMA_VERSION` by one and change the event type;
//! 2. add an [`Upcaster`] to [`UPCASTERS`] from the old version to the new one, for
//!    each event type whose stored shape no longer decodes (a pure function of the
//!    stored `data`; it may also rename the type);
//! 3. commit a fixture of the old shape (`shared/tests/fixtures/`) and a test that
//!    it still loads (see `shared/tests/upcasting.rs`).
//!
//! Event types an upcaster does not name pass through a version step unchanged.

use serde_json::Value;
use std::borrow::Cow;

/// Turns the stored `data` of one event type from `from_version` into the shape of
/// `from_version + 1`.
pub struct Upcaster {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub from_version: u32,
    /// The new event type and data.
    pub upcast: fn(&str, Value) -> (String, Value),
}

/// Every upcaster, oldest first.
pub static UPCASTERS: &[Upcaster] =
    &[Upcaster { aggregate_type: "wallet", event_type: "WalletSuspended", from_version: 1, upcast: crate::wallet::upcast_suspension_v1 }];

/// The event type and data of an event stored at `schema_version`, in today's shape.
pub fn to_current<'a>(aggregate_type: &str, event_type: &'a str, schema_version: u32, data: &'a Value) -> (Cow<'a, str>, Cow<'a, Value>) {
    let mut current: (Cow<'a, str>, Cow<'a, Value>) = (Cow::Borrowed(event_type), Cow::Borrowed(data));
    for upcaster in UPCASTERS {
        if upcaster.aggregate_type == aggregate_type && upcaster.from_version >= schema_version && upcaster.event_type == current.0 {
            let (event_type, data) = (upcaster.upcast)(&current.0, current.1.into_owned());
            current = (Cow::Owned(event_type), Cow::Owned(data));
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_events_older_than_an_upcaster_go_through_it_and_other_types_pass_unchanged() {
        let old = json!({"reason": "KYC documents expired"});
        let (event_type, data) = to_current("wallet", "WalletSuspended", 1, &old);
        assert_eq!((event_type.as_ref(), data.as_ref()), ("WalletSuspended", &json!({"reason": "KYC documents expired", "category": "kyc"})));
        let today = json!({"reason": "fraud: x", "category": "other"});
        assert_eq!(to_current("wallet", "WalletSuspended", 2, &today).1.as_ref(), &today, "already current: untouched");
        let credited = json!({"amount": 1});
        assert!(matches!(to_current("wallet", "WalletCredited", 1, &credited).1, Cow::Borrowed(_)), "no upcaster names it: not even copied");
        assert!(matches!(to_current("transfer", "WalletSuspended", 1, &old).1, Cow::Borrowed(_)), "another aggregate's type of that name");
    }
}
