//! The read side: one field per REST query route, each answered by that route's
//! handler (who may read what is decided there), except a wallet by id, which the
//! [`WalletLoader`] batches.

use super::bridge::{scope, to_graphql, uuid, Scope};
use super::types::*;
use crate::error::ApiError;
use crate::queries::{may_read_wallet, WalletReply};
use crate::routes::Route;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Object, ID};
use shared::ports::{ReadStore, WalletView};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// At most this many ids in one `wallets(ids:)`.
pub const MAX_WALLET_IDS: usize = 100;

pub struct Query;

#[Object]
impl Query {
    /// A wallet: its owner or `admin`.
    async fn wallet(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Wallet> {
        load_wallet(ctx, uuid("id", &id)?).await
    }

    /// Several wallets, each readable by the caller, in one batched read of the store.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn wallets(&self, ctx: &Context<'_>, ids: Vec<ID>) -> async_graphql::Result<Vec<Wallet>> {
        if ids.len() > MAX_WALLET_IDS {
            return Err(to_graphql(ApiError::validation(format!("ids must hold at most {MAX_WALLET_IDS} wallet ids"))));
        }
        let ids = ids.iter().map(|id| uuid("ids", id)).collect::<Result<Vec<_>, _>>()?;
        let scope = scope(ctx);
        let views = ctx.data_unchecked::<DataLoader<WalletLoader>>().load_many(ids.iter().copied()).await.map_err(to_graphql)?;
        ids.iter().map(|id| readable(scope, *id, views.get(id))).collect()
    }

    /// The caller's wallets, oldest first.
    async fn my_wallets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Wallet>> {
        let list: Items<Wallet> = scope(ctx).call(Route::MyWallets, &[], &[], None).await?;
        Ok(list.items)
    }

    /// A transfer: the source's or the destination's owner, or `admin`.
    async fn transfer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Transfer> {
        by_id(ctx, Route::GetTransfer, "transferId", &id).await
    }

    /// A payment: the payer's or the merchant's owner, or `admin`.
    async fn payment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Payment> {
        by_id(ctx, Route::GetPayment, "paymentId", &id).await
    }

    /// A medical card, with its beneficiaries, monthly spend and claims: its holder,
    /// the sponsoring insurer, or `admin`.
    async fn medcard(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<MedCard> {
        by_id(ctx, Route::GetMedCard, "medcardId", &id).await
    }

    /// A prescription claim: the pharmacy that filed it, the card holder, the sponsoring insurer, or `admin`.
    async fn claim(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Claim> {
        by_id(ctx, Route::GetClaim, "claimId", &id).await
    }

    /// The claims made on a card, newest first.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn medcard_claims(&self, ctx: &Context<'_>, medcard_id: ID, first: Option<i32>, after: Option<String>) -> async_graphql::Result<ClaimPage> {
        let id = uuid("medcardId", &medcard_id)?.to_string();
        scope(ctx).call(Route::MedCardClaims, &[("medcardId", &id)], &page(first, after), None).await
    }

    /// A pharmacy's claims, newest first: the pharmacy wallet's owner or `admin`.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn pharmacy_claims(&self, ctx: &Context<'_>, pharmacy_wallet_id: ID, first: Option<i32>, after: Option<String>) -> async_graphql::Result<ClaimPage> {
        let id = uuid("pharmacyWalletId", &pharmacy_wallet_id)?.to_string();
        scope(ctx).call(Route::PharmacyClaims, &[("pharmacyWalletId", &id)], &page(first, after), None).await
    }

    /// The claims made on the caller's cards (as their holder), newest first.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn my_claims(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> async_graphql::Result<ClaimPage> {
        scope(ctx).call(Route::MyClaims, &[], &page(first, after), None).await
    }

    /// An insurance claim: the provider, the card holder, the sponsoring insurer, or `admin`.
    async fn insurance_claim(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<InsuranceClaim> {
        by_id(ctx, Route::GetInsuranceClaim, "claimId", &id).await
    }

    /// Fraud alerts, newest first, of one wallet and/or in one status (OPEN or
    /// RESOLVED): `admin` only.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn fraud_alerts(
        &self,
        ctx: &Context<'_>,
        wallet_id: Option<ID>,
        status: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<FraudAlertPage> {
        let mut query = page(first, after);
        if let Some(wallet_id) = wallet_id {
            query.push(("walletId", uuid("walletId", &wallet_id)?.to_string()));
        }
        query.extend(status.map(|status| ("status", status)));
        scope(ctx).call(Route::FraudAlerts, &[], &query, None).await
    }

    /// A fraud alert: `admin` only.
    async fn fraud_alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<FraudAlert> {
        by_id(ctx, Route::GetFraudAlert, "alertId", &id).await
    }
}

async fn by_id<T: serde::de::DeserializeOwned>(ctx: &Context<'_>, route: Route, param: &str, id: &ID) -> async_graphql::Result<T> {
    let id = uuid(param, id)?.to_string();
    scope(ctx).call(route, &[(param, &id)], &[], None).await
}

async fn load_wallet(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Wallet> {
    let view = ctx.data_unchecked::<DataLoader<WalletLoader>>().load_one(id).await.map_err(to_graphql)?;
    readable(scope(ctx), id, view.as_ref())
}

/// The wallet if the caller may read it: the same rule as `GET /wallets/{walletId}`.
fn readable(scope: &Scope, id: Uuid, view: Option<&WalletView>) -> async_graphql::Result<Wallet> {
    let view = view.ok_or_else(|| to_graphql(ApiError::not_found(format!("wallet {id} was not found"))))?;
    may_read_wallet(scope.caller(), view).map_err(to_graphql)?;
    let body = serde_json::to_value(WalletReply::of(view)).expect("a wallet serialises");
    serde_json::from_value(body).map_err(|e| to_graphql(ApiError::internal(format!("wallet {id}: {e}"))))
}

/// Wallet views by id, all the keys one request asks for in one read of the store
/// (`ReadStore::wallets`: DynamoDB's BatchGetItem). One per GraphQL request: nothing
/// is cached across requests.
pub struct WalletLoader(pub Arc<dyn ReadStore>);

impl Loader<Uuid> for WalletLoader {
    type Value = WalletView;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, ApiError> {
        Ok(self.0.wallets(keys).await?)
    }
}
