//! Fraud detection, pure: the rules over a wallet's outgoing money ([`FraudRules`],
//! [`WalletWatch`]) and the alert they raise ([`alert::FraudAlert`], an aggregate of
//! its own stream, so alerts are event-sourced, replayable and audited).
//!
//! **What counts as outgoing money.** Movements the wallet's owner (or someone
//! holding their token) starts: debits of type `withdrawal`, `payment` (which is also
//! how a captured card payment lands) and `transfer_out`. Fees, claim shares a
//! sponsor pays under a card's rules and a merchant's refunds are the ledger's own
//! bookkeeping: counting them would flag every insurer and merchant.
//!
//! **Time is event time.** Windows are measured on the events' `occurredAt`, never on
//! the clock of whoever processes them, so a replay or a late redelivery finds the
//! same alerts.
//!
//! **At most one alert per wallet, rule and window.** An alert's id is derived from
//! the wallet, the rule and the window ([`Finding::alert_id`]), and raising an alert
//! that exists records nothing: however often the bus redelivers, one alert.

pub mod alert;
pub mod detector;

use crate::money::{Money, MINOR_PER_MAJOR};
use crate::wallet::{DebitType, WalletEvent};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use uuid::Uuid;

/// The thresholds, configurable per deployment (server flags, template parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudRules {
    /// Velocity fires on more than this many outgoing movements …
    pub velocity_count: u32,
    /// … within this many seconds.
    pub velocity_window_seconds: u32,
    /// High value fires on one outgoing movement of at least this much.
    pub high_value: Money,
    /// New wallet fires when more than `new_wallet_outflow` leaves a wallet within
    /// this many hours of its opening.
    pub new_wallet_hours: u32,
    pub new_wallet_outflow: Money,
}

impl Default for FraudRules {
    /// The documented defaults: more than 10 outgoing movements within 60 s; one of
    /// 10,000 or more; more than 1,000 out within a wallet's first 24 hours.
    fn default() -> Self {
        FraudRules {
            velocity_count: 10,
            velocity_window_seconds: 60,
            high_value: Money::from_minor(10_000 * MINOR_PER_MAJOR),
            new_wallet_hours: 24,
            new_wallet_outflow: Money::from_minor(1_000 * MINOR_PER_MAJOR),
        }
    }
}

impl FraudRules {
    /// The settings' names, as environment variables (`template.yaml`'s `Fraud*`
    /// parameters) and, lower-cased with dashes, as the local server's flags.
    pub const SETTINGS: [&'static str; 5] =
        ["FRAUD_VELOCITY_COUNT", "FRAUD_VELOCITY_WINDOW_SECONDS", "FRAUD_HIGH_VALUE", "FRAUD_NEW_WALLET_HOURS", "FRAUD_NEW_WALLET_OUTFLOW"];

    /// The rules from named settings (amounts in major units, `10000` or `10000.50`);
    /// a setting `lookup` does not know keeps its default. Validated.
    pub fn from_settings(lookup: impl Fn(&str) -> Option<String>) -> Result<FraudRules, String> {
        let [velocity_count, velocity_window, high_value, new_wallet_hours, new_wallet_outflow] = Self::SETTINGS;
        let defaults = FraudRules::default();
        let number = |name: &str, default: u32| -> Result<u32, String> {
            lookup(name).map_or(Ok(default), |raw| raw.trim().parse().map_err(|_| format!("{name} must be a whole number, got {raw:?}")))
        };
        let amount = |name: &str, default: Money| -> Result<Money, String> {
            lookup(name).map_or(Ok(default), |raw| Money::parse_decimal(raw.trim()).map_err(|e| format!("{name}: {e}")))
        };
        let rules = FraudRules {
            velocity_count: number(velocity_count, defaults.velocity_count)?,
            velocity_window_seconds: number(velocity_window, defaults.velocity_window_seconds)?,
            high_value: amount(high_value, defaults.high_value)?,
            new_wallet_hours: number(new_wallet_hours, defaults.new_wallet_hours)?,
            new_wallet_outflow: amount(new_wallet_outflow, defaults.new_wallet_outflow)?,
        };
        rules.validate()?;
        Ok(rules)
    }

    /// Refuses thresholds that would make a rule meaningless (zero windows, counts
    /// or amounts).
    pub fn validate(&self) -> Result<(), String> {
        if self.velocity_count == 0 || self.velocity_window_seconds == 0 || self.velocity_window_seconds > 86_400 {
            return Err("velocity: the count must be at least 1 and the window 1 to 86400 seconds".into());
        }
        if !self.high_value.is_positive() || !self.new_wallet_outflow.is_positive() {
            return Err("high value and new-wallet outflow thresholds must be more than 0".into());
        }
        if self.new_wallet_hours == 0 || self.new_wallet_hours > 24 * 365 {
            return Err("the new-wallet period must be 1 to 8760 hours".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Velocity,
    HighValue,
    NewWalletOutflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Raises an alert and suspends the wallet.
    High,
    /// Raises an alert for an operator to review; the wallet keeps working.
    Medium,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
        }
    }
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::Velocity, Rule::HighValue, Rule::NewWalletOutflow];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Velocity => "velocity",
            Rule::HighValue => "high_value",
            Rule::NewWalletOutflow => "new_wallet_outflow",
        }
    }

    /// A burst of movements (a stolen token draining a wallet) and money leaving a
    /// brand-new wallet (a mule account) suspend at once; one large movement alone is
    /// common enough in healthcare (a hospital bill) to only ask for a review.
    pub fn severity(self) -> Severity {
        match self {
            Rule::Velocity | Rule::NewWalletOutflow => Severity::High,
            Rule::HighValue => Severity::Medium,
        }
    }

    /// The reason on the suspension a high-severity alert causes.
    pub fn suspension_reason(self) -> String {
        format!("fraud: {}", self.as_str())
    }
}

/// The money a wallet event sends out of the wallet, if it is one the rules watch.
pub fn outflow(event: &WalletEvent) -> Option<Money> {
    match event {
        WalletEvent::WalletDebited { movement, .. }
            if matches!(movement.transaction_type, DebitType::Withdrawal | DebitType::Payment | DebitType::TransferOut) =>
        {
            Some(movement.amount)
        }
        _ => None,
    }
}

/// Whether the detector needs to see this wallet event at all.
pub fn is_watched(event: &WalletEvent) -> bool {
    matches!(event, WalletEvent::WalletCreated { .. }) || outflow(event).is_some()
}

/// A rule that fired: what the alert it raises records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub wallet_id: Uuid,
    pub rule: Rule,
    pub severity: Severity,
    /// The window the alert covers: a velocity bucket, the new wallet's first hours,
    /// or (high value) the instant of the movement.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// What was seen: the movements counted and the money they moved.
    pub observed_count: u32,
    pub observed_amount: Money,
    /// The rule's threshold, in words (`more than 10 within 60 s`).
    pub threshold: String,
    /// The event that made the rule fire.
    pub trigger_event_id: Uuid,
}

/// The alert ids' namespace (UUID v5): an alert id is a function of wallet, rule and
/// window, which is what makes a redelivery raise nothing new.
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_0c2a_9d3b_4e57_a1c8_5b2f_7d90_e364);

impl Finding {
    pub fn alert_id(&self) -> Uuid {
        let window = match self.rule {
            // One per movement: each large movement is reviewed on its own.
            Rule::HighValue => self.trigger_event_id.to_string(),
            Rule::Velocity | Rule::NewWalletOutflow => self.window_start.timestamp().to_string(),
        };
        Uuid::new_v5(&ALERT_NAMESPACE, format!("{}/{}/{window}", self.wallet_id, self.rule.as_str()).as_bytes())
    }
}

/// What the detector remembers of one wallet between its events: little, and only
/// what the rules need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletWatch {
    /// The wallet version of the last event observed (events at or below it are
    /// redeliveries).
    pub version: u64,
    pub opened_at: Option<DateTime<Utc>>,
    /// When the latest outgoing movements happened, oldest first: at most
    /// `velocity_count + 1` of them, all within the velocity window of the newest.
    /// Stored as epoch nanoseconds: the watch is read and written at every
    /// outgoing movement, and numbers cost neither an allocation nor a date parse.
    #[serde(with = "epoch_nanos")]
    pub recent: VecDeque<DateTime<Utc>>,
    /// Money sent out within the new-wallet period, and in how many movements.
    pub early_outflow: Money,
    pub early_movements: u32,
}

/// A run of instants as epoch nanoseconds: exact (the rules see the same instants
/// after a round trip through the store), and numbers, not strings to parse.
mod epoch_nanos {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::VecDeque;

    pub fn serialize<S: Serializer>(instants: &VecDeque<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        let nanos = |at: &DateTime<Utc>| at.timestamp_nanos_opt().ok_or_else(|| serde::ser::Error::custom(format!("{at} is beyond epoch nanoseconds")));
        serializer.collect_seq(instants.iter().map(nanos).collect::<Result<Vec<i64>, _>>()?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<VecDeque<DateTime<Utc>>, D::Error> {
        Ok(Vec::<i64>::deserialize(deserializer)?.into_iter().map(DateTime::from_timestamp_nanos).collect())
    }
}

impl WalletWatch {
    /// Folds one wallet event (the next one in the wallet's order) into the watch and
    /// says which rules it makes fire.
    pub fn observe(&mut self, rules: &FraudRules, wallet_id: Uuid, version: u64, event_id: Uuid, at: DateTime<Utc>, event: &WalletEvent) -> Vec<Finding> {
        self.version = self.version.max(version);
        if let WalletEvent::WalletCreated { .. } = event {
            self.opened_at = Some(at);
            return vec![];
        }
        let Some(amount) = outflow(event) else { return vec![] };
        let mut findings = Vec::new();
        let finding = |rule: Rule, window_start, window_end, observed_count, observed_amount, threshold: String| Finding {
            wallet_id,
            rule,
            severity: rule.severity(),
            window_start,
            window_end,
            observed_count,
            observed_amount,
            threshold,
            trigger_event_id: event_id,
        };

        // Velocity: the movements within the window that ends now.
        let window = Duration::seconds(rules.velocity_window_seconds.into());
        self.recent.push_back(at);
        while self.recent.front().is_some_and(|first| *first <= at - window) || self.recent.len() > rules.velocity_count as usize + 1 {
            self.recent.pop_front();
        }
        if self.recent.len() > rules.velocity_count as usize {
            // Alerts are counted per fixed window (the one `at` falls in), so a
            // burst that keeps going raises one alert a window, not one a movement.
            let bucket = at.timestamp() - at.timestamp().rem_euclid(window.num_seconds());
            let start = DateTime::from_timestamp(bucket, 0).unwrap_or(at);
            findings.push(finding(
                Rule::Velocity,
                start,
                start + window,
                self.recent.len() as u32,
                amount,
                format!("more than {} outgoing movements within {} s", rules.velocity_count, rules.velocity_window_seconds),
            ));
        }

        if amount >= rules.high_value {
            findings.push(finding(Rule::HighValue, at, at, 1, amount, format!("one outgoing movement of {} or more", rules.high_value)));
        }

        // New wallet: only while the wallet is young (a wallet opened before the
        // detector saw it has no opening time and is not judged by this rule).
        if let Some(opened_at) = self.opened_at {
            let period = Duration::hours(rules.new_wallet_hours.into());
            if at < opened_at + period {
                let before = self.early_outflow;
                self.early_outflow = self.early_outflow.checked_add(amount).unwrap_or(self.early_outflow);
                self.early_movements += 1;
                if before <= rules.new_wallet_outflow && self.early_outflow > rules.new_wallet_outflow {
                    findings.push(finding(
                        Rule::NewWalletOutflow,
                        opened_at,
                        opened_at + period,
                        self.early_movements,
                        self.early_outflow,
                        format!("more than {} out within {} hours of opening", rules.new_wallet_outflow, rules.new_wallet_hours),
                    ));
                }
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::wallet::{CreditType, KycLevel, Movement, WalletType};
    use chrono::TimeZone;

    const WALLET: Uuid = Uuid::from_u128(42);

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn egp(major: i64) -> Money {
        Money::from_minor(major * MINOR_PER_MAJOR)
    }

    fn created() -> WalletEvent {
        WalletEvent::WalletCreated {
            wallet_id: WALLET,
            owner_id: "alice".into(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
        }
    }

    fn debited(major: i64, kind: DebitType) -> WalletEvent {
        WalletEvent::WalletDebited {
            movement: Movement { amount: egp(major), transaction_type: kind, reference: "r".into(), description: None, currency: None },
            balance_after: Money::ZERO,
        }
    }

    fn credited(major: i64) -> WalletEvent {
        WalletEvent::WalletCredited {
            movement: Movement { amount: egp(major), transaction_type: CreditType::Deposit, reference: "r".into(), description: None, currency: None },
            balance_after: Money::ZERO,
        }
    }

    /// Given a watch that has seen `history` (event, seconds after t0), when `event`
    /// happens `at` seconds after t0, then these rules fire.
    fn when(history: &[(WalletEvent, i64)], event: WalletEvent, at: i64) -> Vec<Rule> {
        let rules = FraudRules::default();
        let mut watch = WalletWatch::default();
        for (version, (past, seconds)) in history.iter().enumerate() {
            watch.observe(&rules, WALLET, version as u64 + 1, Uuid::now_v7(), t0() + Duration::seconds(*seconds), past);
        }
        let findings = watch.observe(&rules, WALLET, history.len() as u64 + 1, Uuid::now_v7(), t0() + Duration::seconds(at), &event);
        findings.iter().map(|f| f.rule).collect()
    }

    fn withdrawals(count: usize, every_seconds: i64) -> Vec<(WalletEvent, i64)> {
        (0..count).map(|i| (debited(1, DebitType::Withdrawal), i as i64 * every_seconds)).collect()
    }

    #[test]
    fn the_eleventh_outgoing_movement_within_a_minute_is_velocity() {
        assert_eq!(when(&withdrawals(9, 1), debited(1, DebitType::Withdrawal), 10), Vec::<Rule>::new(), "ten is not more than ten");
        assert_eq!(when(&withdrawals(10, 1), debited(1, DebitType::TransferOut), 10), vec![Rule::Velocity]);
    }

    #[test]
    fn movements_spread_beyond_the_window_are_not_velocity() {
        assert_eq!(when(&withdrawals(10, 6), debited(1, DebitType::Payment), 60), Vec::<Rule>::new(), "the first left the window at 60 s");
    }

    #[test]
    fn credits_fees_claim_shares_and_refunds_are_not_outgoing_movements() {
        let mut history = withdrawals(10, 1);
        history.push((credited(5), 10));
        assert_eq!(when(&history, debited(1, DebitType::Fee), 11), Vec::<Rule>::new());
        assert_eq!(when(&history, debited(1, DebitType::ClaimPayment), 11), Vec::<Rule>::new());
        assert_eq!(when(&history, debited(1, DebitType::PaymentRefund), 11), Vec::<Rule>::new());
    }

    #[test]
    fn one_movement_of_ten_thousand_or_more_is_high_value() {
        assert_eq!(when(&[], debited(10_000, DebitType::Withdrawal), 0), vec![Rule::HighValue]);
        assert_eq!(when(&[], debited(9_999, DebitType::Withdrawal), 0), Vec::<Rule>::new());
        assert_eq!(Rule::HighValue.severity(), Severity::Medium, "a large bill alone only asks for a review");
    }

    #[test]
    fn more_than_a_thousand_out_of_a_new_wallet_within_a_day_fires_once() {
        let young = [(created(), 0), (debited(600, DebitType::Withdrawal), 60)];
        assert_eq!(when(&young[..1], debited(1_000, DebitType::Withdrawal), 60), Vec::<Rule>::new(), "1,000 is not more than 1,000");
        assert_eq!(when(&young, debited(401, DebitType::TransferOut), 120), vec![Rule::NewWalletOutflow]);
        let already = [(created(), 0), (debited(600, DebitType::Withdrawal), 60), (debited(401, DebitType::Withdrawal), 120)];
        assert_eq!(when(&already, debited(5, DebitType::Withdrawal), 180), Vec::<Rule>::new(), "it fired when the sum crossed the line");
        let a_day = 24 * 3600;
        assert_eq!(when(&young, debited(401, DebitType::Withdrawal), a_day), Vec::<Rule>::new(), "the wallet is a day old");
        assert_eq!(when(&[], debited(2_000, DebitType::Withdrawal), 0), Vec::<Rule>::new(), "a wallet whose opening was not seen is not judged young");
    }

    #[test]
    fn a_burst_raises_one_alert_per_window() {
        let rules = FraudRules::default();
        let mut watch = WalletWatch::default();
        let mut alerts = std::collections::BTreeSet::new();
        for i in 0..30 {
            for finding in watch.observe(&rules, WALLET, i + 1, Uuid::now_v7(), t0() + Duration::seconds(i as i64), &debited(1, DebitType::Withdrawal)) {
                alerts.insert(finding.alert_id());
            }
        }
        assert_eq!(alerts.len(), 1, "30 movements in 30 s of one fixed minute: one velocity alert");
        assert!(watch.recent.len() <= rules.velocity_count as usize + 1, "the watch keeps only what the rule needs");
    }

    #[test]
    fn settings_override_the_defaults_and_bad_ones_are_refused() {
        let settings = |pairs: &'static [(&str, &str)]| move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
        assert_eq!(FraudRules::from_settings(settings(&[])), Ok(FraudRules::default()));
        let rules = FraudRules::from_settings(settings(&[("FRAUD_VELOCITY_COUNT", "3"), ("FRAUD_HIGH_VALUE", "250.50")])).unwrap();
        assert_eq!((rules.velocity_count, rules.high_value), (3, Money::from_minor(25_050)));
        assert!(FraudRules::from_settings(settings(&[("FRAUD_VELOCITY_COUNT", "ten")])).is_err());
        assert!(FraudRules::from_settings(settings(&[("FRAUD_NEW_WALLET_OUTFLOW", "-5")])).is_err());
        assert!(FraudRules::from_settings(settings(&[("FRAUD_VELOCITY_WINDOW_SECONDS", "0")])).is_err());
    }

    #[test]
    fn nonsense_thresholds_are_refused() {
        assert!(FraudRules::default().validate().is_ok());
        assert!(FraudRules { velocity_count: 0, ..FraudRules::default() }.validate().is_err());
        assert!(FraudRules { velocity_window_seconds: 0, ..FraudRules::default() }.validate().is_err());
        assert!(FraudRules { high_value: Money::ZERO, ..FraudRules::default() }.validate().is_err());
        assert!(FraudRules { new_wallet_hours: 0, ..FraudRules::default() }.validate().is_err());
    }

    #[test]
    fn a_watch_round_trips_through_its_document_exactly_with_instants_as_numbers() {
        let mut watch = WalletWatch { version: 7, opened_at: Some(t0()), ..WalletWatch::default() };
        watch.recent.extend([t0() + Duration::nanoseconds(1), t0() + Duration::milliseconds(1500) + Duration::nanoseconds(999)]);
        let body = serde_json::to_value(&watch).unwrap();
        assert!(body["recent"].as_array().unwrap().iter().all(serde_json::Value::is_i64), "{body}");
        assert_eq!(WalletWatch::deserialize(&body).unwrap(), watch);
    }
}
