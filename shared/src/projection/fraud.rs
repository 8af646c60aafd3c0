//! The fraud alert view: one document per alert, listed for the admin routes by
//! wallet and by status (and both), newest first.

use super::DocumentView;
use crate::envelope::EventEnvelope;
use crate::fraud::alert::FraudAlertEvent;
use crate::fraud::Finding;
use crate::ports::Listing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const OPEN: &str = "OPEN";
pub const RESOLVED: &str = "RESOLVED";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FraudAlertView {
    pub alert_id: Uuid,
    /// What the rule saw: the wallet, the rule and its severity, the window, what was
    /// counted against which threshold, and the event that made it fire.
    #[serde(flatten)]
    pub finding: Finding,
    /// `OPEN` or `RESOLVED`.
    pub status: String,
    pub suspended_wallet: bool,
    pub resolution: Option<String>,
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    pub raised_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// Every alert.
pub fn all_list() -> String {
    "fraud-alerts".into()
}

/// The alerts of one wallet, or of every wallet in one status, or both.
pub fn filtered_list(wallet_id: Option<Uuid>, status: Option<&str>) -> String {
    let mut list = all_list();
    if let Some(wallet) = wallet_id {
        list.push_str(&format!("#wallet#{wallet}"));
    }
    if let Some(status) = status {
        list.push_str(&format!("#status#{status}"));
    }
    list
}

impl DocumentView for FraudAlertView {
    const KIND: &'static str = "fraud-alert";
    type Event = FraudAlertEvent;

    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &FraudAlertEvent) -> Option<Self> {
        match (current, event) {
            (None, FraudAlertEvent::FraudAlertRaised { alert_id, finding, suspended_wallet }) => Some(FraudAlertView {
                alert_id: *alert_id,
                finding: finding.clone(),
                status: OPEN.into(),
                suspended_wallet: *suspended_wallet,
                resolution: None,
                note: None,
                resolved_by: None,
                raised_at: envelope.occurred_at,
                resolved_at: None,
                version: envelope.version,
            }),
            (None, _) => None,
            (Some(mut view), FraudAlertEvent::FraudAlertResolved { resolution, note, resolved_by }) => {
                view.status = RESOLVED.into();
                view.resolution = Some(resolution.as_str().into());
                view.note = note.clone();
                view.resolved_by = Some(resolved_by.clone());
                view.resolved_at = Some(envelope.occurred_at);
                view.version = envelope.version;
                Some(view)
            }
            (Some(mut view), FraudAlertEvent::FraudAlertRaised { .. }) => {
                view.version = envelope.version;
                Some(view)
            }
        }
    }

    fn listings(&self) -> Vec<Listing> {
        let sort_key = format!("{}#{}", crate::clock::sort_key(&self.raised_at), self.alert_id);
        [
            all_list(),
            filtered_list(Some(self.finding.wallet_id), None),
            filtered_list(None, Some(&self.status)),
            filtered_list(Some(self.finding.wallet_id), Some(&self.status)),
        ]
        .into_iter()
        .map(|list| Listing { list, sort_key: sort_key.clone() })
        .collect()
    }
}
