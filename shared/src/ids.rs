//! Typed ids: a wallet id and a payment id are both UUIDs, but never the same thing.
//! The application layer takes and returns these, so that passing a payment id
//! where a wallet is meant does not compile.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (v7) id.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    )*};
}

typed_id!(
    WalletId,
    TransferId,
    PaymentId,
    MedCardId,
    BeneficiaryId,
    /// A prescription claim.
    ClaimId,
    InsuranceClaimId,
    /// A fraud alert (derived from its wallet, rule and window).
    FraudAlertId,
);
