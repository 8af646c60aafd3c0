//! The authorization matrix: every route of the table (`api::routes`), called as no
//! caller, its party, a stranger without roles, a stranger with each role, and
//! `admin`. Each call runs on a fresh ledger holding the same scene; the expected
//! status comes from the route's declared [`Access`], and a refused call must have
//! appended nothing (so no balance, hold, card, payment or claim changed).

mod support;

use api::auth::Caller;
use api::routes::Access;
use api::Route;
use serde_json::{json, Value};
use support::{caller, World};

/// The ids of one scene, the same in every world built for it.
struct Scene {
    /// alice's active wallet (1000), and a pending and an empty one of hers.
    a: String,
    pending: String,
    empty: String,
    /// bob's active wallet: a transfer's destination, a payment's merchant.
    b: String,
    transfer: String,
    /// Authorised (alice pays bob) and captured (for a refund).
    payment: String,
    captured: String,
    /// The insurer's sponsor wallet, an active card of pat's and an issued one.
    sponsor: String,
    card: String,
    issued_card: String,
    beneficiary: String,
    patient_wallet: String,
    pharmacy_wallet: String,
    claim: String,
    provider_wallet: String,
    insurance_claim: String,
    /// An open alert on alice's wallet.
    fraud_alert: String,
}

fn alice() -> Caller {
    caller("alice", &[])
}
fn bob() -> Caller {
    caller("bob", &[])
}
fn insurer() -> Caller {
    caller("ins", &["insurer"])
}
fn patient() -> Caller {
    caller("pat", &[])
}
fn pharmacy() -> Caller {
    caller("rx", &["pharmacy"])
}
fn provider() -> Caller {
    caller("clinic", &[])
}

fn id(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_string()
}

async fn scene(world: &World) -> Scene {
    let (a, b) = (world.wallet(&alice(), "personal", 1_000).await, world.wallet(&bob(), "merchant", 0).await);
    let pending = id(&world.expect(201, Route::CreateWallet, &alice(), &[], json!({"walletType": "personal"})).await, "walletId");
    let empty = world.wallet(&alice(), "personal", 0).await;
    let transfer =
        world.expect(202, Route::CreateTransfer, &alice(), &[], json!({"sourceWalletId": a, "destinationWalletId": b, "amount": 10, "reference": "T"})).await;
    let pay = |amount: u32| json!({"payerWalletId": a, "merchantWalletId": b, "amount": amount, "reference": "ORDER"});
    let payment = id(&world.expect(201, Route::AuthorizePayment, &alice(), &[], pay(50)).await, "paymentId");
    let captured = id(&world.expect(201, Route::AuthorizePayment, &alice(), &[], pay(40)).await, "paymentId");
    world.expect(200, Route::CapturePayment, &bob(), &[("paymentId", &captured)], json!({})).await;
    let sponsor = world.wallet(&insurer(), "business", 10_000).await;
    let patient_wallet = world.wallet(&patient(), "personal", 1_000).await;
    let pharmacy_wallet = world.wallet(&pharmacy(), "merchant", 0).await;
    let provider_wallet = world.wallet(&provider(), "business", 0).await;
    let (card, beneficiary) = world.card(&insurer(), &sponsor, &patient(), 80).await;
    let issued_card = id(
        &world
            .expect(
                201,
                Route::IssueMedCard,
                &insurer(),
                &[],
                json!({"holderId": "pat", "sponsorWalletId": sponsor, "planName": "Silver", "coveragePercent": 50,
                       "monthlyLimit": 100, "expiresAt": "2035-01-01T00:00:00Z"}),
            )
            .await,
        "medcardId",
    );
    let claim = id(
        &world
            .expect(
                202,
                Route::SubmitPrescriptionClaim,
                &pharmacy(),
                &[],
                json!({"medcardId": card, "beneficiaryId": beneficiary, "prescriptionId": "RX-0", "pharmacyWalletId": pharmacy_wallet,
                       "patientWalletId": patient_wallet, "items": [{"drugCode": "X", "drugName": "X", "quantity": 1, "unitPrice": 10}]}),
            )
            .await,
        "claimId",
    );
    let insurance_claim = id(
        &world
            .expect(
                201,
                Route::SubmitInsuranceClaim,
                &provider(),
                &[],
                json!({"medcardId": card, "providerWalletId": provider_wallet, "amount": 100, "description": "visit"}),
            )
            .await,
        "claimId",
    );
    let fraud_alert = world.fraud_alert(&a).await;
    Scene {
        fraud_alert,
        a,
        pending,
        empty,
        b,
        transfer: id(&transfer, "transferId"),
        payment,
        captured,
        sponsor,
        card,
        issued_card,
        beneficiary,
        patient_wallet,
        pharmacy_wallet,
        claim,
        provider_wallet,
        insurance_claim,
    }
}

/// One route's request: its party, path parameters, body and the status of a success.
struct Request {
    party: Option<Caller>,
    params: Vec<(&'static str, String)>,
    body: Value,
    success: u16,
}

fn request(route: Route, s: &Scene) -> Request {
    let on = |party: Caller, params: Vec<(&'static str, &String)>, body: Value, success: u16| Request {
        party: Some(party),
        params: params.into_iter().map(|(k, v)| (k, v.clone())).collect(),
        body,
        success,
    };
    let movement = json!({"amount": 5, "transactionType": "deposit", "reference": "M"});
    match route {
        Route::CreateWallet => on(alice(), vec![], json!({"walletType": "personal"}), 201),
        Route::ActivateWallet => on(alice(), vec![("walletId", &s.pending)], Value::Null, 200),
        Route::SuspendWallet => Request { party: None, ..on(alice(), vec![("walletId", &s.a)], json!({"reason": "review"}), 200) },
        Route::CloseWallet => on(alice(), vec![("walletId", &s.empty)], json!({}), 200),
        Route::CreditWallet => on(alice(), vec![("walletId", &s.a)], movement, 200),
        Route::DebitWallet => on(alice(), vec![("walletId", &s.a)], json!({"amount": 5, "transactionType": "withdrawal", "reference": "M"}), 200),
        Route::CreateTransfer => on(alice(), vec![], json!({"sourceWalletId": s.a, "destinationWalletId": s.b, "amount": 1, "reference": "T2"}), 202),
        Route::GetWallet | Route::ListTransactions | Route::GetBalance => on(alice(), vec![("walletId", &s.a)], Value::Null, 200),
        Route::MyWallets | Route::MyClaims => on(alice(), vec![], Value::Null, 200),
        Route::GetTransfer => on(alice(), vec![("transferId", &s.transfer)], Value::Null, 200),
        Route::AuthorizePayment => on(alice(), vec![], json!({"payerWalletId": s.a, "merchantWalletId": s.b, "amount": 1, "reference": "O2"}), 201),
        Route::CapturePayment => on(bob(), vec![("paymentId", &s.payment)], json!({}), 200),
        Route::VoidPayment => on(bob(), vec![("paymentId", &s.payment)], Value::Null, 200),
        Route::RefundPayment => on(bob(), vec![("paymentId", &s.captured)], json!({"reason": "returned"}), 200),
        Route::GetPayment => on(alice(), vec![("paymentId", &s.payment)], Value::Null, 200),
        Route::IssueMedCard => on(
            insurer(),
            vec![],
            json!({"holderId": "pat", "sponsorWalletId": s.sponsor, "planName": "Gold", "coveragePercent": 80, "monthlyLimit": 100,
                   "expiresAt": "2035-01-01T00:00:00Z"}),
            201,
        ),
        Route::ActivateMedCard => on(insurer(), vec![("medcardId", &s.issued_card)], Value::Null, 200),
        Route::SuspendMedCard => on(insurer(), vec![("medcardId", &s.card)], json!({"reason": "audit"}), 200),
        Route::ExpireMedCard => on(insurer(), vec![("medcardId", &s.card)], Value::Null, 200),
        Route::ChangeMedCardLimit => on(insurer(), vec![("medcardId", &s.card)], json!({"monthlyLimit": 500}), 200),
        Route::AddBeneficiary => {
            on(patient(), vec![("medcardId", &s.card)], json!({"beneficiaryId": uuid::Uuid::now_v7(), "name": "Kid", "relationship": "child"}), 200)
        }
        Route::RemoveBeneficiary => on(patient(), vec![("medcardId", &s.card), ("beneficiaryId", &s.beneficiary)], Value::Null, 200),
        Route::GetMedCard | Route::MedCardSpend | Route::MedCardClaims => on(patient(), vec![("medcardId", &s.card)], Value::Null, 200),
        Route::SubmitPrescriptionClaim => on(
            pharmacy(),
            vec![],
            json!({"medcardId": s.card, "beneficiaryId": s.beneficiary, "prescriptionId": "RX-1", "pharmacyWalletId": s.pharmacy_wallet,
                   "patientWalletId": s.patient_wallet, "items": [{"drugCode": "X", "drugName": "X", "quantity": 1, "unitPrice": 10}]}),
            202,
        ),
        Route::GetClaim => on(pharmacy(), vec![("claimId", &s.claim)], Value::Null, 200),
        Route::PharmacyClaims => on(pharmacy(), vec![("pharmacyWalletId", &s.pharmacy_wallet)], Value::Null, 200),
        Route::SubmitInsuranceClaim => {
            on(provider(), vec![], json!({"medcardId": s.card, "providerWalletId": s.provider_wallet, "amount": 50, "description": "x-ray"}), 201)
        }
        Route::ApproveInsuranceClaim => on(insurer(), vec![("claimId", &s.insurance_claim)], json!({}), 200),
        Route::RejectInsuranceClaim => on(insurer(), vec![("claimId", &s.insurance_claim)], json!({"reason": "not covered"}), 200),
        Route::GetInsuranceClaim => on(provider(), vec![("claimId", &s.insurance_claim)], Value::Null, 200),
        Route::FraudAlerts => Request { party: None, ..on(alice(), vec![], Value::Null, 200) },
        Route::GetFraudAlert => Request { party: None, ..on(alice(), vec![("alertId", &s.fraud_alert)], Value::Null, 200) },
        Route::ResolveFraudAlert => {
            Request { party: None, ..on(alice(), vec![("alertId", &s.fraud_alert)], json!({"resolution": "false_positive", "note": "checked"}), 200) }
        }
        // Its fields are refused one by one (tests/graphql.rs); the request itself is any caller's.
        Route::GraphQL => on(alice(), vec![], json!({"query": "{ myWallets { walletId } }"}), 200),
        Route::Health => Request { party: None, ..on(alice(), vec![], Value::Null, 200) },
    }
}

/// Who calls, and the status the route's access promises them.
fn callers(route: Route, request: &Request) -> Vec<(&'static str, Option<Caller>, u16)> {
    let access = route.access();
    let (ok, refused) = (request.success, 403);
    let stranger_gets = match access {
        Access::Public | Access::Caller => ok,
        Access::Party | Access::PartyWithRole(_) | Access::Admin => refused,
    };
    let mut callers = vec![
        ("no caller", None, if access == Access::Public { ok } else { 401 }),
        ("stranger", Some(caller("mallory", &[])), stranger_gets),
        ("stranger with pharmacy", Some(caller("mallory-rx", &["pharmacy"])), stranger_gets),
        ("stranger with insurer", Some(caller("mallory-ins", &["insurer"])), stranger_gets),
        ("admin", Some(caller("ops", &["admin"])), ok),
    ];
    match (&request.party, access) {
        (Some(party), _) => callers.push(("party", Some(party.clone()), ok)),
        // An admin-only route refuses even the owner of what it acts on.
        (None, Access::Admin) => callers.push(("owner", Some(alice()), refused)),
        (None, _) => {}
    }
    callers
}

#[tokio::test]
async fn every_route_answers_each_kind_of_caller_as_its_access_says_and_refusals_change_nothing() {
    let mut failures = vec![];
    let mut checked = 0;
    for &route in Route::ALL {
        for (who, as_caller, expected) in callers(route, &request(route, &Scene::placeholder())) {
            let world = World::new();
            let scene = scene(&world).await;
            let request = request(route, &scene);
            let before = world.event_count().await;
            let params: Vec<(&str, &str)> = request.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = world.call(route, as_caller.as_ref(), &params, request.body.clone()).await;
            checked += 1;
            if status != expected {
                failures.push(format!("{} as {who}: expected {expected}, got {status} {body}", route.name()));
            }
            if status >= 400 && world.event_count().await != before {
                failures.push(format!("{} as {who}: refused with {status} but appended events", route.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} calls broke the matrix:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(checked, Route::ALL.len() * 6 - 1, "every route with every kind of caller (the health check has no party)");
}

impl Scene {
    /// Ids for deciding who calls, before any world exists (only the callers are read).
    fn placeholder() -> Scene {
        let x = String::new();
        Scene {
            a: x.clone(),
            pending: x.clone(),
            empty: x.clone(),
            b: x.clone(),
            transfer: x.clone(),
            payment: x.clone(),
            captured: x.clone(),
            sponsor: x.clone(),
            card: x.clone(),
            issued_card: x.clone(),
            beneficiary: x.clone(),
            patient_wallet: x.clone(),
            pharmacy_wallet: x.clone(),
            claim: x.clone(),
            provider_wallet: x.clone(),
            insurance_claim: x.clone(),
            fraud_alert: x,
        }
    }
}
