//! Live updates (the local server's `/graphql/ws`, `graphql-transport-ws`): a
//! wallet's view, a transfer's, a claim's, sent first as they are and then each
//! time the projections apply an event of that aggregate. Each is read through its
//! REST route's handler, so only a caller who may read it is answered (checked when
//! subscribing, and again at every update).

use super::bridge::{uuid, Scope, SubscriptionSlot};
use super::types::{Claim, Transfer, Wallet};
use crate::routes::Route;
use async_graphql::{Context, Subscription, ID};
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The aggregates whose events the projections have just applied (their read
/// models are up to date with them), for the subscriptions to re-read.
#[derive(Clone)]
pub struct LiveFeed(broadcast::Sender<Uuid>);

/// Updates a slow subscriber may fall behind by before it re-reads regardless.
const BACKLOG: usize = 4096;

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed(broadcast::channel(BACKLOG).0)
    }
}

impl LiveFeed {
    /// Called by the projections with each event they applied.
    pub fn projected(&self, aggregate_id: Uuid) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(aggregate_id);
        }
    }
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The wallet now, then after every change: its owner or `admin`.
    async fn wallet_updated(&self, ctx: &Context<'_>, wallet_id: ID) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Wallet>>> {
        follow(ctx, Route::GetWallet, "walletId", uuid("walletId", &wallet_id)?, |w: &Wallet| w.version).await
    }

    /// The transfer now, then at every step of its saga: the source's or the destination's owner, or `admin`.
    async fn transfer_status(&self, ctx: &Context<'_>, transfer_id: ID) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Transfer>>> {
        follow(ctx, Route::GetTransfer, "transferId", uuid("transferId", &transfer_id)?, |t: &Transfer| t.version).await
    }

    /// The prescription claim now, then at every step of its saga: whoever may read it.
    async fn claim_status(&self, ctx: &Context<'_>, claim_id: ID) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Claim>>> {
        follow(ctx, Route::GetClaim, "claimId", uuid("claimId", &claim_id)?, |c: &Claim| c.version).await
    }
}

/// What a subscription has sent so far.
struct Following<T> {
    scope: Arc<Scope>,
    updates: broadcast::Receiver<Uuid>,
    first: Option<T>,
    last_version: u64,
    ended: bool,
    /// The connection's place this subscription holds, given back when it is dropped.
    _slot: Option<SubscriptionSlot>,
}

/// Reads `id` through `route` (refusing the subscription as the route refuses the
/// read), then streams it again whenever the projections apply one of its events
/// and its version moved.
async fn follow<T: DeserializeOwned + Send + Sync + 'static>(
    ctx: &Context<'_>,
    route: Route,
    param: &'static str,
    id: Uuid,
    version: fn(&T) -> u64,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>>> {
    let scope = ctx.data_unchecked::<Arc<Scope>>().clone();
    let slot = scope.open_subscription(route).await?;
    // Subscribed before the first read: no update between the two is missed.
    let updates = ctx.data::<LiveFeed>()?.0.subscribe();
    let key = id.to_string();
    let first: T = scope.call(route, &[(param, &key)], &[], None).await?;
    let following = Following { scope, updates, last_version: version(&first), first: Some(first), ended: false, _slot: slot };
    Ok(stream::unfold(following, move |mut state| {
        let key = key.clone();
        async move {
            if state.ended {
                return None;
            }
            if let Some(first) = state.first.take() {
                return Some((Ok(first), state));
            }
            loop {
                match state.updates.recv().await {
                    Ok(aggregate) if aggregate != id => continue,
                    // Fallen behind: whatever was missed, the re-read below sees.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
                match state.scope.call::<T>(route, &[(param, &key)], &[], None).await {
                    Ok(view) if version(&view) > state.last_version => {
                        state.last_version = version(&view);
                        return Some((Ok(view), state));
                    }
                    Ok(_) => continue,
                    Err(refused) => {
                        state.ended = true;
                        return Some((Err(refused), state));
                    }
                }
            }
        }
    }))
}
