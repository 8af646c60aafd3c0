//! The FraudAlert aggregate: one stream per alert (`fraud-alert#<alertId>`).
//!
//! Lifecycle: raised `open` (by the detector) → `resolved` (by an admin, once).
//! Raising an alert that exists records nothing: that is what keeps a redelivered
//! event from raising a second alert for the same wallet, rule and window.

use super::{Finding, Rule, Severity};
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It was fraud: the wallet stays suspended until an admin decides otherwise.
    ConfirmedFraud,
    /// It was the owner: an admin lifts any suspension with the wallet's activate route.
    FalsePositive,
}

impl Resolution {
    pub const ALL: [Resolution; 2] = [Resolution::ConfirmedFraud, Resolution::FalsePositive];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::ConfirmedFraud => "confirmed_fraud",
            Resolution::FalsePositive => "false_positive",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FraudAlertCommand {
    Raise(Finding),
    Resolve { resolution: Resolution, note: Option<String>, resolved_by: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum FraudAlertEvent {
    FraudAlertRaised {
        alert_id: Uuid,
        #[serde(flatten)]
        finding: Finding,
        /// Whether this alert suspended the wallet (high severity, and the wallet was
        /// active).
        suspended_wallet: bool,
    },
    FraudAlertResolved {
        resolution: Resolution,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        resolved_by: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum FraudAlert {
    #[default]
    Unraised,
    Open {
        alert_id: Uuid,
        wallet_id: Uuid,
        rule: Rule,
        severity: Severity,
    },
    Resolved {
        alert_id: Uuid,
        wallet_id: Uuid,
        resolution: Resolution,
    },
}

impl FraudAlert {
    /// The wallet the alert is about, once raised.
    pub fn wallet_id(&self) -> Option<Uuid> {
        match self {
            FraudAlert::Unraised => None,
            FraudAlert::Open { wallet_id, .. } | FraudAlert::Resolved { wallet_id, .. } => Some(*wallet_id),
        }
    }
}

impl Aggregate for FraudAlert {
    const TYPE: &'static str = "fraud-alert";
    type Command = FraudAlertCommand;
    type Event = FraudAlertEvent;

    fn decide(&self, command: &FraudAlertCommand) -> Result<Vec<FraudAlertEvent>, DomainError> {
        match (self, command) {
            // Whether it also suspends is the application layer's to say (it knows
            // the wallet); the event it records says what happened.
            (FraudAlert::Unraised, FraudAlertCommand::Raise(finding)) => {
                Ok(vec![FraudAlertEvent::FraudAlertRaised { alert_id: finding.alert_id(), finding: finding.clone(), suspended_wallet: false }])
            }
            // Already raised (a redelivery, a replay): nothing new.
            (_, FraudAlertCommand::Raise(_)) => Ok(vec![]),
            (FraudAlert::Unraised, FraudAlertCommand::Resolve { .. }) => Err(DomainError::Unknown { kind: "fraud alert" }),
            (FraudAlert::Open { .. }, FraudAlertCommand::Resolve { resolution, note, resolved_by }) => {
                Ok(vec![FraudAlertEvent::FraudAlertResolved { resolution: *resolution, note: note.clone(), resolved_by: resolved_by.clone() }])
            }
            (FraudAlert::Resolved { alert_id, .. }, FraudAlertCommand::Resolve { .. }) => {
                Err(DomainError::InvalidStateTransition { kind: "fraud alert", id: *alert_id, status: "resolved", action: "resolve" })
            }
        }
    }

    fn apply(self, event: &FraudAlertEvent) -> Self {
        match (self, event) {
            (FraudAlert::Unraised, FraudAlertEvent::FraudAlertRaised { alert_id, finding, .. }) => {
                FraudAlert::Open { alert_id: *alert_id, wallet_id: finding.wallet_id, rule: finding.rule, severity: finding.severity }
            }
            (FraudAlert::Open { alert_id, wallet_id, .. }, FraudAlertEvent::FraudAlertResolved { resolution, .. }) => {
                FraudAlert::Resolved { alert_id, wallet_id, resolution: *resolution }
            }
            // Every stored event applies; one out of place changes nothing.
            (state, _) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use crate::money::Money;
    use chrono::TimeZone;

    fn finding() -> Finding {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        Finding {
            wallet_id: Uuid::from_u128(7),
            rule: Rule::Velocity,
            severity: Severity::High,
            window_start: at,
            window_end: at + chrono::Duration::seconds(60),
            observed_count: 11,
            observed_amount: Money::from_minor(500),
            threshold: "more than 10 outgoing movements within 60 s".into(),
            trigger_event_id: Uuid::from_u128(99),
        }
    }

    fn raised() -> FraudAlertEvent {
        FraudAlertEvent::FraudAlertRaised { alert_id: finding().alert_id(), finding: finding(), suspended_wallet: true }
    }

    fn resolve(resolution: Resolution) -> FraudAlertCommand {
        FraudAlertCommand::Resolve { resolution, note: Some("owner confirmed".into()), resolved_by: "ops".into() }
    }

    #[test]
    fn a_finding_raises_an_open_alert_named_after_wallet_rule_and_window() {
        given::<FraudAlert>(&[]).when(&FraudAlertCommand::Raise(finding())).then(&[FraudAlertEvent::FraudAlertRaised {
            alert_id: finding().alert_id(),
            finding: finding(),
            suspended_wallet: false,
        }]);
        let mut later_in_the_window = finding();
        later_in_the_window.trigger_event_id = Uuid::from_u128(100);
        later_in_the_window.observed_count = 12;
        assert_eq!(later_in_the_window.alert_id(), finding().alert_id(), "same wallet, rule and window: same alert");
        let mut next_window = finding();
        next_window.window_start += chrono::Duration::seconds(60);
        assert_ne!(next_window.alert_id(), finding().alert_id());
    }

    #[test]
    fn raising_an_alert_again_records_nothing() {
        given::<FraudAlert>(&[raised()]).when(&FraudAlertCommand::Raise(finding())).then(&[]);
    }

    #[test]
    fn an_open_alert_is_resolved_once() {
        let resolved = given::<FraudAlert>(&[raised()]).when(&resolve(Resolution::FalsePositive));
        resolved.then(&[FraudAlertEvent::FraudAlertResolved {
            resolution: Resolution::FalsePositive,
            note: Some("owner confirmed".into()),
            resolved_by: "ops".into(),
        }]);
        let done = FraudAlertEvent::FraudAlertResolved { resolution: Resolution::ConfirmedFraud, note: None, resolved_by: "ops".into() };
        given::<FraudAlert>(&[raised(), done]).when(&resolve(Resolution::FalsePositive)).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn an_alert_that_was_never_raised_cannot_be_resolved() {
        given::<FraudAlert>(&[]).when(&resolve(Resolution::ConfirmedFraud)).then_refused("NOT_FOUND");
    }
}
