//! End-to-end tests of medical cards, prescription claims (the claim saga) and
//! insurance claims through the HTTP contract (`docs/API.md`), against a real
//! `healthpay serve` process on the embedded SQLite store.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::Server;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(10);

/// A sponsor (insurer), a patient with a card, a pharmacy, and their wallets.
struct Scene {
    insurer: String,
    patient: String,
    pharmacy: String,
    sponsor_wallet: String,
    patient_wallet: String,
    pharmacy_wallet: String,
    medcard: String,
    beneficiary: String,
}

impl Scene {
    /// Card: 80 % coverage, `limit` a month; the patient is its holder and beneficiary.
    fn new(server: &Server, patient_funds: &str, coverage: u8, limit: u64) -> Scene {
        let insurer = server.token("insurer-1", "insurer");
        let patient = server.token("patient-1", "");
        let pharmacy = server.token("pharmacy-1", "pharmacy");
        let sponsor_wallet = server.active_wallet(&insurer, Some("10000"));
        let patient_wallet = server.active_wallet(&patient, Some(patient_funds));
        let pharmacy_wallet = server.active_wallet(&pharmacy, None);
        let issued = server.post(
            &insurer,
            "/api/v2/commands/medcards",
            json!({"holderId": "patient-1", "sponsorWalletId": sponsor_wallet, "planName": "Gold", "coveragePercent": coverage,
                   "monthlyLimit": limit, "expiresAt": "2035-01-01T00:00:00Z"}),
        );
        let medcard = issued.expect(201)["medcardId"].as_str().unwrap().to_string();
        assert_eq!(issued.body["status"], "ISSUED");
        server.post(&insurer, &format!("/api/v2/commands/medcards/{medcard}/activate"), json!({})).expect(200);
        let beneficiary = Uuid::now_v7().to_string();
        server
            .post(
                &patient,
                &format!("/api/v2/commands/medcards/{medcard}/beneficiaries"),
                json!({"beneficiaryId": beneficiary, "name": "Self", "relationship": "self"}),
            )
            .expect(200);
        Scene { insurer, patient, pharmacy, sponsor_wallet, patient_wallet, pharmacy_wallet, medcard, beneficiary }
    }

    fn claim_body(&self, prescription: &str, items: Value) -> Value {
        json!({"medcardId": self.medcard, "beneficiaryId": self.beneficiary, "prescriptionId": prescription,
               "pharmacyWalletId": self.pharmacy_wallet, "patientWalletId": self.patient_wallet, "items": items})
    }

    fn submit(&self, server: &Server, prescription: &str, items: Value) -> String {
        let reply = server.post(&self.pharmacy, "/api/v2/commands/claims/prescriptions", self.claim_body(prescription, items));
        assert_eq!(reply.expect(202)["status"], "PENDING");
        reply.body["claimId"].as_str().unwrap().to_string()
    }

    fn settled(&self, server: &Server, claim: &str) -> Value {
        server.eventually(&self.pharmacy, &format!("/api/v2/claims/{claim}"), SETTLE, |c| c["status"] != "PENDING")
    }

    /// Every wallet's balance once the read side has caught up with the claim.
    fn balances(&self, server: &Server) -> (f64, f64, f64) {
        let admin = server.token("root", "admin");
        let balance = |wallet: &str| {
            // The command side knows the truth; the temporal query reads it.
            server.get(&admin, &format!("/api/v2/wallets/{wallet}/balance")).expect(200)["balance"].as_f64().unwrap()
        };
        (balance(&self.patient_wallet), balance(&self.sponsor_wallet), balance(&self.pharmacy_wallet))
    }
}

fn standard_items() -> Value {
    json!([
        {"drugCode": "PAN500", "drugName": "Panadol 500mg", "quantity": 2, "unitPrice": 150},
        {"drugCode": "AMOX250", "drugName": "Amoxicillin 250mg", "quantity": 1, "unitPrice": 100}
    ])
}

#[test]
fn a_covered_claim_is_approved_split_between_sponsor_and_patient() {
    let server = Server::start("claim-approved");
    let scene = Scene::new(&server, "500", 80, 1000);
    let before = scene.balances(&server);
    let claim = scene.submit(&server, "RX-1", standard_items());
    let done = scene.settled(&server, &claim);
    assert_eq!(
        (done["status"].as_str(), done["totalAmount"].as_f64(), done["coveredAmount"].as_f64(), done["copaymentAmount"].as_f64()),
        (Some("APPROVED"), Some(400.0), Some(320.0), Some(80.0)),
        "{done}"
    );
    assert_eq!(done["items"].as_array().unwrap().len(), 2);
    assert_eq!(done["rejectionReason"], Value::Null);

    let after = scene.balances(&server);
    assert_eq!(after, (420.0, 9680.0, 400.0), "patient paid 80, sponsor 320, pharmacy got 400");
    assert_eq!(before.0 + before.1 + before.2, after.0 + after.1 + after.2, "money is conserved");

    let spend = server.eventually(&scene.patient, &format!("/api/v2/medcards/{}/spend", scene.medcard), SETTLE, |s| s["claimCount"] == 1);
    assert_eq!((spend["spent"].as_f64(), spend["remaining"].as_f64(), spend["monthlyLimit"].as_f64()), (Some(320.0), Some(680.0), Some(1000.0)), "{spend}");

    let listed = server.get(&scene.pharmacy, &format!("/api/v2/pharmacies/{}/claims", scene.pharmacy_wallet)).expect(200).clone();
    assert_eq!(listed["items"][0]["claimId"], json!(claim));
    let of_card = server.get(&scene.patient, &format!("/api/v2/medcards/{}/claims", scene.medcard)).expect(200).clone();
    assert_eq!(of_card["items"][0]["status"], "APPROVED");
    let mine = server.get(&scene.patient, "/api/v2/users/me/claims").expect(200).clone();
    assert_eq!((mine["items"][0]["claimId"].as_str(), mine["nextCursor"].as_str()), (Some(claim.as_str()), None), "the holder's claims");
    assert!(server.get(&scene.pharmacy, "/api/v2/users/me/claims").expect(200)["items"].as_array().unwrap().is_empty(), "the pharmacy holds no card");

    // A prescription is paid at most once.
    let again = server.post(&scene.pharmacy, "/api/v2/commands/claims/prescriptions", scene.claim_body("RX-1", standard_items()));
    again.expect_error(409, "ALREADY_EXISTS");
}

#[test]
fn a_patient_who_cannot_pay_the_copayment_gets_a_rejection_and_nothing_moves() {
    let server = Server::start("claim-copay");
    let scene = Scene::new(&server, "50", 80, 1000);
    let before = scene.balances(&server);
    let claim = scene.submit(&server, "RX-2", standard_items());
    let done = scene.settled(&server, &claim);
    assert_eq!((done["status"].as_str(), done["rejectionReason"].as_str()), (Some("REJECTED"), Some("INSUFFICIENT_FUNDS")), "{done}");
    assert_eq!(scene.balances(&server), before, "no wallet moved");
    let spend = server.eventually(&scene.insurer, &format!("/api/v2/medcards/{}/spend", scene.medcard), SETTLE, |s| s["reserved"] == 0);
    assert_eq!(
        (spend["spent"].as_f64(), spend["remaining"].as_f64(), spend["claimCount"].as_u64()),
        (Some(0.0), Some(1000.0), Some(0)),
        "reservation released"
    );

    // A rejected prescription paid nothing: it may be filed again.
    server.credit(&scene.patient, &scene.patient_wallet, "100").expect(200);
    let retry = scene.submit(&server, "RX-2", standard_items());
    assert_eq!(scene.settled(&server, &retry)["status"], "APPROVED");
}

#[test]
fn a_closed_pharmacy_wallet_rejects_the_claim_after_refunding_both_payers() {
    let server = Server::start("claim-closed-pharmacy");
    let scene = Scene::new(&server, "500", 80, 1000);
    server.post(&scene.pharmacy, &format!("/api/v2/commands/wallets/{}/close", scene.pharmacy_wallet), json!({"reason": "moved"})).expect(200);
    let before = scene.balances(&server);
    let claim = scene.submit(&server, "RX-3", standard_items());
    let done = scene.settled(&server, &claim);
    assert_eq!((done["status"].as_str(), done["rejectionReason"].as_str()), (Some("REJECTED"), Some("WALLET_NOT_ACTIVE")), "{done}");
    assert_eq!(scene.balances(&server), before, "copayment and sponsor debit were refunded");

    // The wallets' histories show each debit and its refund.
    let history = |token: &str, wallet: &str| {
        let items = server.get(token, &format!("/api/v2/wallets/{wallet}/transactions")).expect(200)["items"].clone();
        items.as_array().unwrap().iter().map(|i| (i["type"].as_str().unwrap().to_string(), i["amount"].as_f64().unwrap())).collect::<Vec<_>>()
    };
    server.eventually(&scene.patient, &format!("/api/v2/wallets/{}", scene.patient_wallet), SETTLE, |w| w["balance"] == 500);
    assert_eq!(history(&scene.patient, &scene.patient_wallet)[..2], [("credit".to_string(), 80.0), ("debit".to_string(), 80.0)]);
    server.eventually(&scene.insurer, &format!("/api/v2/wallets/{}", scene.sponsor_wallet), SETTLE, |w| w["balance"] == 10000);
    assert_eq!(history(&scene.insurer, &scene.sponsor_wallet)[..2], [("credit".to_string(), 320.0), ("debit".to_string(), 320.0)]);
}

#[test]
fn two_concurrent_claims_over_the_limit_approve_exactly_one() {
    let server = Server::start("claim-race");
    let scene = Scene::new(&server, "5000", 100, 1000);
    // Each claim alone takes the whole limit: whichever reserves first leaves the other
    // nothing, whether that one is priced before the reservation or after it.
    let items = json!([{"drugCode": "INS100", "drugName": "Insulin", "quantity": 10, "unitPrice": 100}]);
    let claims: Vec<String> = std::thread::scope(|s| {
        let handles = ["RX-A", "RX-B"].map(|rx| {
            let (scene, server, items) = (&scene, &server, items.clone());
            s.spawn(move || scene.submit(server, rx, items))
        });
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let outcomes: Vec<Value> = claims.iter().map(|c| scene.settled(&server, c)).collect();
    let approved = outcomes.iter().filter(|c| c["status"] == "APPROVED").count();
    assert_eq!(approved, 1, "{outcomes:?}");
    let rejected = outcomes.iter().find(|c| c["status"] == "REJECTED").expect("one rejected");
    assert_eq!(rejected["rejectionReason"], "LIMIT_EXCEEDED");
    let spend = server.eventually(&scene.insurer, &format!("/api/v2/medcards/{}/spend", scene.medcard), SETTLE, |s| s["claimCount"] == 1 && s["reserved"] == 0);
    assert_eq!(spend["spent"].as_f64(), Some(1000.0));
    assert_eq!(scene.balances(&server), (5000.0, 9000.0, 1000.0));
}

#[test]
fn card_and_claim_commands_check_roles_ownership_and_input() {
    let server = Server::start("claim-rules");
    let scene = Scene::new(&server, "500", 80, 1000);
    let stranger = server.token("stranger", "");
    let other_pharmacy = server.token("pharmacy-2", "pharmacy");
    let issue = |token: &str, body: Value| server.post(token, "/api/v2/commands/medcards", body);
    let card = |coverage: Value, limit: Value| json!({"holderId": "p", "sponsorWalletId": scene.sponsor_wallet, "planName": "Gold", "coveragePercent": coverage, "monthlyLimit": limit, "expiresAt": "2035-01-01T00:00:00Z"});
    issue(&stranger, card(json!(80), json!(1000))).expect_error(403, "FORBIDDEN");
    issue(&server.token("insurer-2", "insurer"), card(json!(80), json!(1000))).expect_error(403, "FORBIDDEN");
    issue(&scene.insurer, card(json!(101), json!(1000))).expect_error(400, "VALIDATION_ERROR");
    issue(&scene.insurer, card(json!(80.5), json!(1000))).expect_error(400, "VALIDATION_ERROR");
    issue(&scene.insurer, card(json!(80), json!(0.001))).expect_error(400, "VALIDATION_ERROR");
    let medcard = &scene.medcard;
    server.post(&scene.patient, &format!("/api/v2/commands/medcards/{medcard}/suspend"), json!({"reason": "x"})).expect_error(403, "FORBIDDEN");
    server.get(&stranger, &format!("/api/v2/medcards/{medcard}")).expect_error(403, "FORBIDDEN");
    server.get(&scene.patient, &format!("/api/v2/medcards/{medcard}/spend?month=2026-13")).expect_error(400, "VALIDATION_ERROR");
    server.get(&scene.patient, &format!("/api/v2/medcards/{}", Uuid::now_v7())).expect_error(404, "NOT_FOUND");
    let view = server.get(&scene.patient, &format!("/api/v2/medcards/{medcard}")).expect(200).clone();
    assert_eq!(
        (view["status"].as_str(), view["coveragePercent"].as_u64(), view["beneficiaries"][0]["beneficiaryId"].as_str()),
        (Some("ACTIVE"), Some(80), Some(scene.beneficiary.as_str()))
    );

    let submit = |token: &str, body: Value| server.post(token, "/api/v2/commands/claims/prescriptions", body);
    submit(&scene.patient, scene.claim_body("RX-9", standard_items())).expect_error(403, "FORBIDDEN");
    submit(&other_pharmacy, scene.claim_body("RX-9", standard_items())).expect_error(403, "FORBIDDEN");
    for items in [
        json!([]),
        json!([{"drugCode": "A", "drugName": "A", "quantity": 0, "unitPrice": 1}]),
        json!([{"drugCode": "A", "drugName": "A", "quantity": 1.5, "unitPrice": 1}]),
        json!([{"drugCode": "A", "drugName": "A", "quantity": 1, "unitPrice": -1}]),
        // Every line is an amount, but the total is above 1,000,000,000.
        json!([{"drugCode": "A", "drugName": "A", "quantity": 1000000, "unitPrice": 1000000000}]),
        json!([{"drugCode": "A", "drugName": "A", "quantity": 1, "unitPrice": 1, "lot": "L-1"}]),
    ] {
        submit(&scene.pharmacy, scene.claim_body("RX-9", items)).expect_error(400, "VALIDATION_ERROR");
    }
    let mut unknown_card = scene.claim_body("RX-9", standard_items());
    unknown_card["medcardId"] = json!(Uuid::now_v7());
    submit(&scene.pharmacy, unknown_card).expect_error(404, "NOT_FOUND");

    // A beneficiary not on the card: the saga rejects the claim with the reason.
    let mut not_covered = scene.claim_body("RX-10", standard_items());
    not_covered["beneficiaryId"] = json!(Uuid::now_v7());
    let claim = submit(&scene.pharmacy, not_covered).expect(202)["claimId"].as_str().unwrap().to_string();
    assert_eq!(scene.settled(&server, &claim)["rejectionReason"], "BENEFICIARY_NOT_COVERED");
    server.get(&stranger, &format!("/api/v2/claims/{claim}")).expect_error(403, "FORBIDDEN");
    server.get(&scene.patient, &format!("/api/v2/claims/{claim}")).expect(200);
    server.get(&other_pharmacy, &format!("/api/v2/pharmacies/{}/claims", scene.pharmacy_wallet)).expect_error(403, "FORBIDDEN");

    // A suspended card covers nothing.
    server.post(&scene.insurer, &format!("/api/v2/commands/medcards/{medcard}/suspend"), json!({"reason": "premium unpaid"})).expect(200);
    let claim = scene.submit(&server, "RX-11", standard_items());
    assert_eq!(scene.settled(&server, &claim)["rejectionReason"], "CARD_NOT_ACTIVE");
}

#[test]
fn an_insurance_claim_is_approved_for_less_and_settled_at_once() {
    let server = Server::start("insurance-claim");
    let scene = Scene::new(&server, "500", 80, 1000);
    let provider = server.token("clinic-1", "");
    let provider_wallet = server.active_wallet(&provider, None);
    let submit =
        |amount: u64| {
            let reply = server.post(&provider, "/api/v2/commands/insurance-claims",
            json!({"medcardId": scene.medcard, "providerWalletId": provider_wallet, "amount": amount, "description": "Appendectomy", "documents": ["INV-77"]}));
            reply.expect(201)["claimId"].as_str().unwrap().to_string()
        };
    let claim = submit(2500);
    let approve =
        |token: &str, claim: &str, amount: Value| server.post(token, &format!("/api/v2/commands/insurance-claims/{claim}/approve"), json!({"amount": amount}));
    approve(&provider, &claim, json!(2000)).expect_error(403, "FORBIDDEN");
    approve(&scene.insurer, &claim, json!(3000)).expect_error(422, "LIMIT_EXCEEDED");
    approve(&scene.insurer, &claim, json!(20000)).expect_error(422, "LIMIT_EXCEEDED");
    let approved = approve(&scene.insurer, &claim, json!(2000));
    assert_eq!(approved.expect(200)["status"], "SETTLED");
    let view = server.eventually(&provider, &format!("/api/v2/insurance-claims/{claim}"), SETTLE, |c| c["status"] == "SETTLED");
    assert_eq!((view["amount"].as_f64(), view["approvedAmount"].as_f64()), (Some(2500.0), Some(2000.0)));
    let admin = server.token("root", "admin");
    let balance = |wallet: &str| server.get(&admin, &format!("/api/v2/wallets/{wallet}/balance")).expect(200)["balance"].as_f64().unwrap();
    assert_eq!((balance(&scene.sponsor_wallet), balance(&provider_wallet)), (8000.0, 2000.0));
    approve(&scene.insurer, &claim, json!(1)).expect_error(422, "INVALID_STATE_TRANSITION");

    // More than the sponsor holds: refused whole, the claim still waits.
    let big = submit(9000);
    approve(&scene.insurer, &big, json!(9000)).expect_error(422, "INSUFFICIENT_FUNDS");
    assert_eq!(balance(&scene.sponsor_wallet), 8000.0);
    let rejected = server.post(&scene.insurer, &format!("/api/v2/commands/insurance-claims/{big}/reject"), json!({"reason": "not covered"}));
    assert_eq!(rejected.expect(200)["status"], "REJECTED");
    let view = server.eventually(&provider, &format!("/api/v2/insurance-claims/{big}"), SETTLE, |c| c["status"] == "REJECTED");
    assert_eq!(view["rejectionReason"], "not covered");
}
