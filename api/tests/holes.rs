//! The two holes a hostile caller found (issue 9), each pinned by a test that
//! failed before its fix.

mod support;

use api::auth::{with_caller, Role, TokenVerifier};
use api::Route;
use serde_json::{json, Value};
use support::{caller, World};

/// A pharmacy filing against a real card and beneficiary, but naming a stranger's
/// wallet for the copayment, is refused and files nothing.
#[tokio::test]
async fn a_pharmacy_cannot_take_the_copayment_from_a_wallet_the_card_holder_does_not_own() {
    let world = World::new();
    let (insurer, patient, pharmacy, stranger) =
        (caller("insurer-1", &["insurer"]), caller("patient-1", &[]), caller("pharmacy-1", &["pharmacy"]), caller("stranger", &[]));
    let sponsor = world.wallet(&insurer, "business", 10_000).await;
    let pharmacy_wallet = world.wallet(&pharmacy, "merchant", 0).await;
    let stranger_wallet = world.wallet(&stranger, "personal", 1_000).await;
    let (card, beneficiary) = world.card(&insurer, &sponsor, &patient, 50).await;
    let before = world.event_count().await;
    let (status, body) = world
        .call(
            Route::SubmitPrescriptionClaim,
            Some(&pharmacy),
            &[],
            json!({"medcardId": card, "beneficiaryId": beneficiary, "prescriptionId": "RX-1", "pharmacyWalletId": pharmacy_wallet,
                   "patientWalletId": stranger_wallet,
                   "items": [{"drugCode": "X", "drugName": "X", "quantity": 1, "unitPrice": 500}]}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    assert_eq!(world.event_count().await, before, "nothing was filed");
    assert_eq!(world.balance(&stranger_wallet).await, json!(1000));
}

/// Roles travel as a list: one odd role name that contains a comma is not two roles.
#[tokio::test]
async fn a_role_with_a_comma_in_its_name_is_not_admin() {
    // Signed by the ledger's own key: the token is genuine, its one role name is odd.
    let verifier = TokenVerifier::new(b"0123456789abcdef");
    let token = verifier.mint("mallory", &["pharmacy,admin".into()], chrono::Utc::now().timestamp(), 600);
    let odd = verifier.verify(&token).unwrap();
    // Through the authorizer context, as API Gateway hands it to a function.
    let request = with_caller(lambda_http::Request::new(lambda_http::Body::Empty), &odd);
    let seen = api::auth::caller_of(&request).unwrap();
    assert_eq!(seen.sub, "mallory");
    assert!(!seen.is_admin() && !seen.has_role(Role::Pharmacy), "{seen:?}");

    let world = World::new();
    let alice = caller("alice", &[]);
    let wallet = world.wallet(&alice, "personal", 100).await;
    let (status, _) = world.call(Route::GetWallet, Some(&odd), &[("walletId", &wallet)], Value::Null).await;
    assert_eq!(status, 403);
    let (status, _) = world.call(Route::SuspendWallet, Some(&odd), &[("walletId", &wallet)], json!({"reason": "mine now"})).await;
    assert_eq!(status, 403);
}
