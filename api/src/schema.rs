//! Wire types that the request and response bodies share, with their OpenAPI schemas:
//! amounts, timestamps, and the closed sets of names (statuses, kinds) a field takes.
//!
//! Response bodies are structs that derive both `Serialize` (what is sent) and
//! `utoipa::ToSchema` (what the document says is sent), so the two cannot drift.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use shared::money::Money;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An amount in an answer: a JSON number in major units with at most 2 decimals
/// (`Money::to_json_number`), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Money);

impl From<Money> for Amount {
    fn from(money: Money) -> Self {
        Amount(money)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_json_number().serialize(serializer)
    }
}

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .description(Some("An amount in major units of the currency, with at most 2 decimals (exact: never a float artefact)."))
            .examples([serde_json::json!(1250.5)])
            .into()
    }
}
impl ToSchema for Amount {
    fn name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }
}

/// An amount in a request: a JSON number greater than 0 and at most 1,000,000,000,
/// with at most 2 decimals (`1.500` and `1e2` are fine; `1.005` is not). Parsed by
/// `http::amount` from the raw JSON text, never through a float.
pub struct RequestAmount;

impl PartialSchema for RequestAmount {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000))
            .multiple_of(Some(0.01))
            .description(Some(
                "An amount in major units of the wallet's currency: greater than 0, at most 1,000,000,000, at most 2 decimals. Anything else is 400 VALIDATION_ERROR.",
            ))
            .examples([serde_json::json!(250)])
            .into()
    }
}
impl ToSchema for RequestAmount {
    fn name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
}

/// An opening balance: like [`RequestAmount`] but it may be 0.
pub struct OpeningBalance;

impl PartialSchema for OpeningBalance {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(1_000_000_000))
            .multiple_of(Some(0.01))
            .description(Some("An opening balance in major units: 0 to 1,000,000,000, at most 2 decimals."))
            .into()
    }
}
impl ToSchema for OpeningBalance {}

/// A time in an answer: RFC 3339 in UTC with milliseconds (`2026-11-21T10:00:00.000Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&shared::clock::rfc3339(self.0))
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples([serde_json::json!("2026-11-21T10:00:00.000Z")])
            .into()
    }
}
impl ToSchema for Timestamp {}

/// A currency the ledger counts: the ISO 4217 codes whose minor unit is a hundredth
/// (`Currency::parse` decides; the list is read from it, so it cannot drift).
pub struct CurrencyCode;

impl PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        let letters = b'A'..=b'Z';
        let codes: Vec<String> = letters
            .clone()
            .flat_map(|a| letters.clone().flat_map(move |b| (b'A'..=b'Z').map(move |c| String::from_utf8(vec![a, b, c]).expect("ASCII"))))
            .filter(|code| shared::money::Currency::parse(code).is_some())
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes))
            .description(Some("An ISO 4217 currency counted in hundredths (JPY, KWD and the like are not offered)."))
            .into()
    }
}
impl ToSchema for CurrencyCode {}

/// Closed sets of names, as the document lists them (`#[schema(value_type = …)]` on
/// the field that carries one).
macro_rules! names {
    ($( $(#[$doc:meta])* $name:ident: [$($value:literal),+ $(,)?]; )*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl $name {
            pub const VALUES: &[&str] = &[$($value),+];
        }
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some([$($value),+])).into()
            }
        }
        impl ToSchema for $name {}
    )*};
}

names! {
    WalletType: ["personal", "business", "merchant"];
    KycLevel: ["basic", "standard", "full"];
    WalletStatus: ["pending", "active", "suspended", "closed"];
    CreditType: ["deposit", "refund", "transfer_in", "cashback"];
    DebitType: ["payment", "withdrawal", "transfer_out", "fee"];
    /// Whether a history line added or took money.
    MovementKind: ["credit", "debit"];
    TransferStatus: ["PENDING", "COMPLETED", "FAILED"];
    PaymentStatus: ["AUTHORIZED", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED", "EXPIRED"];
    MedCardStatus: ["ISSUED", "ACTIVE", "SUSPENDED", "EXPIRED"];
    ClaimStatus: ["PENDING", "APPROVED", "REJECTED"];
    ClaimStage: [
        "submitted", "priced", "coverage-reserved", "copayment-debited", "sponsor-debited", "pharmacy-credited",
        "compensating", "approved", "rejected", "refund-in-suspense",
    ];
    SuspendedRefundKind: ["sponsor", "copayment"];
    InsuranceClaimStatus: ["SUBMITTED", "APPROVED", "SETTLED", "REJECTED"];
    HealthStatus: ["healthy", "unhealthy"];
    FraudRule: ["velocity", "high_value", "new_wallet_outflow"];
    /// `high` also suspends the wallet.
    FraudSeverity: ["high", "medium"];
    FraudAlertStatus: ["OPEN", "RESOLVED"];
    FraudResolution: ["confirmed_fraud", "false_positive"];
}
