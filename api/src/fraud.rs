//! Fraud alerts, for operators: list, read, resolve. The detector raises them
//! (`shared::fraud::detector`); no route does.

use crate::error::ApiError;
use crate::http::{one_of, optional_text, parse_uuid, Incoming, Success};
use crate::queries::{document_page, ok};
use crate::schema::{Amount, FraudAlertStatus, FraudResolution, FraudRule, FraudSeverity, Timestamp};
use crate::App;
use serde::{Deserialize, Serialize};
use shared::app::{reviews_fraud, Receipt};
use shared::fraud::alert::{FraudAlert, Resolution};
use shared::ids::FraudAlertId;
use shared::ports::StoredResponse;
use shared::projection::fraud::{filtered_list, FraudAlertView, OPEN, RESOLVED};
use shared::projection::read_view;
use utoipa::ToSchema;
use uuid::Uuid;

const NOTE_MAX: usize = 512;

fn admin_only(incoming: &Incoming) -> Result<(), ApiError> {
    let caller = incoming.caller();
    if reviews_fraud(caller) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{} may not review fraud alerts (admin only)", caller.sub)))
    }
}

/// A fraud alert, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudAlertReply {
    alert_id: Uuid,
    wallet_id: Uuid,
    #[schema(value_type = FraudRule)]
    rule: &'static str,
    #[schema(value_type = FraudSeverity)]
    severity: &'static str,
    #[schema(value_type = FraudAlertStatus)]
    status: String,
    /// The window the alert covers (a velocity window, a new wallet's first hours, or
    /// the instant of one large movement).
    window_start: Timestamp,
    window_end: Timestamp,
    /// The outgoing movements counted, and the money they moved.
    observed_count: u32,
    observed_amount: Amount,
    /// The rule's threshold, in words.
    threshold: String,
    /// The event that made the rule fire.
    trigger_event_id: Uuid,
    /// Whether the alert suspended the wallet (reason `fraud: <rule>`).
    suspended_wallet: bool,
    /// `null` while open.
    #[schema(value_type = Option<FraudResolution>)]
    resolution: Option<String>,
    note: Option<String>,
    resolved_by: Option<String>,
    raised_at: Timestamp,
    resolved_at: Option<Timestamp>,
    version: u64,
}

impl FraudAlertReply {
    fn of(alert: &FraudAlertView) -> Self {
        let finding = &alert.finding;
        FraudAlertReply {
            alert_id: alert.alert_id,
            wallet_id: finding.wallet_id,
            rule: finding.rule.as_str(),
            severity: finding.severity.as_str(),
            status: alert.status.clone(),
            window_start: finding.window_start.into(),
            window_end: finding.window_end.into(),
            observed_count: finding.observed_count,
            observed_amount: finding.observed_amount.into(),
            threshold: finding.threshold.clone(),
            trigger_event_id: finding.trigger_event_id,
            suspended_wallet: alert.suspended_wallet,
            resolution: alert.resolution.clone(),
            note: alert.note.clone(),
            resolved_by: alert.resolved_by.clone(),
            raised_at: alert.raised_at.into(),
            resolved_at: alert.resolved_at.map(Timestamp),
            version: alert.version,
        }
    }
}

/// A page of alerts, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudAlertPage {
    items: Vec<FraudAlertReply>,
    /// Pass as `cursor` for the next page; `null` on the last page. Opaque.
    next_cursor: Option<String>,
}

/// `?walletId&status&limit&cursor`, newest first.
pub async fn list(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    admin_only(incoming)?;
    let wallet_id = incoming.query("walletId").map(|raw| parse_uuid("walletId", &raw)).transpose()?;
    let status = match incoming.query("status") {
        None => None,
        Some(raw) => match raw.to_ascii_uppercase().as_str() {
            OPEN => Some(OPEN),
            RESOLVED => Some(RESOLVED),
            _ => return Err(ApiError::validation(format!("status must be OPEN or RESOLVED, got {raw:?}"))),
        },
    };
    let (items, next_cursor) = document_page(app, incoming, &filtered_list(wallet_id, status), FraudAlertReply::of).await?;
    Ok(ok(FraudAlertPage { items, next_cursor }))
}

pub async fn get(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    admin_only(incoming)?;
    let alert_id = incoming.path_id("alertId")?;
    let alert: FraudAlertView =
        read_view(app.read.as_ref(), alert_id).await?.ok_or_else(|| ApiError::not_found(format!("fraud alert {alert_id} was not found")))?;
    Ok(ok(FraudAlertReply::of(&alert)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct ResolveFraudAlertBody {
    #[schema(value_type = FraudResolution)]
    resolution: String,
    #[serde(default)]
    #[schema(max_length = 512)]
    note: Option<String>,
}

/// What resolving answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudAlertCommandReply {
    alert_id: Uuid,
    #[schema(value_type = FraudAlertStatus)]
    status: &'static str,
    #[schema(value_type = FraudResolution)]
    resolution: &'static str,
}

/// An admin's verdict on an open alert. It does not lift a suspension: that is the
/// wallet's activate route, also admin only.
pub async fn resolve(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: ResolveFraudAlertBody = incoming.json()?;
    let resolution: Resolution = one_of("resolution", &body.resolution, &FraudResolution::VALUES.join(", "))?;
    let note = optional_text("note", body.note.as_deref(), NOTE_MAX)?;
    let alert_id = FraudAlertId(incoming.path_id("alertId")?);
    let caller = incoming.caller();
    let render = |_: &Receipt<FraudAlert>| Success::ok(FraudAlertCommandReply { alert_id: alert_id.0, status: RESOLVED, resolution: resolution.as_str() });
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.resolve_fraud_alert(caller, alert_id, resolution, note, &call).await, render)
}
