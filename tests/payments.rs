//! End-to-end tests of the payment routes (`docs/API.md`, "Payments") against a
//! real `healthpay serve` process on the embedded SQLite store.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{Reply, Server};

const SETTLE: Duration = Duration::from_secs(5);

fn authorize(server: &Server, token: &str, payer: &str, merchant: &str, amount: &str) -> Reply {
    let body = format!(
        r#"{{"payerWalletId": "{payer}", "merchantWalletId": "{merchant}", "amount": {amount}, "reference": "ORDER-1", "description": "Pharmacy order"}}"#
    );
    server.request("POST", "/api/v2/commands/payments", Some(token), &[], Some(&body))
}

fn authorized(server: &Server, token: &str, payer: &str, merchant: &str, amount: &str) -> String {
    let reply = authorize(server, token, payer, merchant, amount);
    assert_eq!(reply.expect(201)["status"], "AUTHORIZED");
    reply.body["paymentId"].as_str().unwrap().to_string()
}

fn act(server: &Server, token: &str, payment: &str, action: &str, body: Value) -> Reply {
    server.post(token, &format!("/api/v2/commands/payments/{payment}/{action}"), body)
}

/// The payment view once it satisfies `done`.
fn payment_when(server: &Server, token: &str, payment: &str, done: impl Fn(&Value) -> bool) -> Value {
    server.eventually(token, &format!("/api/v2/payments/{payment}"), SETTLE, done)
}

/// The wallet view once it shows `(balance, held)`.
fn wallet_at(server: &Server, token: &str, wallet: &str, balance: Value, held: Value) -> Value {
    server.eventually(token, &format!("/api/v2/wallets/{wallet}"), SETTLE, |w| w["balance"] == balance && w["held"] == held)
}

/// A payer (alice, 1000.00) and a merchant (shop, empty), both active.
fn parties(server: &Server) -> (String, String, String, String) {
    let (alice, shop) = (server.token("alice", ""), server.token("shop", ""));
    let payer = server.active_wallet(&alice, Some("1000"));
    let merchant = server.active_wallet(&shop, None);
    (alice, shop, payer, merchant)
}

#[test]
fn authorise_capture_part_and_refund_in_two_parts_moves_each_cent_once() {
    let server = Server::start("payments-flow");
    let (alice, shop, payer, merchant) = parties(&server);

    let reply = authorize(&server, &alice, &payer, &merchant, "300");
    let body = reply.expect(201).clone();
    let payment = body["paymentId"].as_str().unwrap().to_string();
    assert_eq!((body["status"].as_str(), body["amount"].clone(), body["version"].clone()), (Some("AUTHORIZED"), json!(300), json!(1)));
    assert_eq!(reply.header("location"), Some(format!("/api/v2/payments/{payment}").as_str()));
    // The hold counts against the payer at once: the command side refuses what no longer fits.
    server.debit(&alice, &payer, "700.01").expect_error(422, "INSUFFICIENT_FUNDS");
    let view = wallet_at(&server, &alice, &payer, json!(1000), json!(300));
    assert_eq!((view["available"].clone(), view["version"].clone()), (json!(700), json!(4)), "the balance is unchanged: {view}");

    let view = payment_when(&server, &shop, &payment, |p| p["status"] == "AUTHORIZED");
    assert_eq!((view["payerWalletId"].as_str(), view["merchantWalletId"].as_str()), (Some(payer.as_str()), Some(merchant.as_str())));
    assert_eq!((view["amount"].clone(), view["capturedAmount"].clone(), view["refundedAmount"].clone()), (json!(300), json!(0), json!(0)));
    for field in ["createdAt", "updatedAt", "expiresAt"] {
        assert!(view[field].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{field} in {view}");
    }
    let week = chrono::DateTime::parse_from_rfc3339(view["expiresAt"].as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(view["createdAt"].as_str().unwrap()).unwrap();
    assert_eq!(week, chrono::Duration::days(7), "the default expiry");

    // A partial capture: 200.50 to the merchant, the other 99.50 released.
    let captured = act(&server, &shop, &payment, "capture", json!({"amount": 200.5})).expect(200).clone();
    assert_eq!(
        (captured["status"].as_str(), captured["capturedAmount"].clone(), captured["releasedAmount"].clone()),
        (Some("CAPTURED"), json!(200.5), json!(99.5))
    );
    act(&server, &shop, &payment, "capture", json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    wallet_at(&server, &alice, &payer, json!(799.5), json!(0));
    wallet_at(&server, &shop, &merchant, json!(200.5), json!(0));

    // Two partial refunds, the second without an amount: the rest. Never more than captured.
    let first = act(&server, &shop, &payment, "refund", json!({"amount": 50, "reason": "one item missing"})).expect(200).clone();
    assert_eq!((first["status"].as_str(), first["refundAmount"].clone(), first["refundedAmount"].clone()), (Some("PARTIALLY_REFUNDED"), json!(50), json!(50)));
    act(&server, &shop, &payment, "refund", json!({"amount": 150.51, "reason": "too much"})).expect_error(422, "LIMIT_EXCEEDED");
    act(&server, &shop, &payment, "refund", json!({"amount": 1})).expect_error(400, "VALIDATION_ERROR");
    let rest = act(&server, &shop, &payment, "refund", json!({"reason": "order cancelled"})).expect(200).clone();
    assert_eq!((rest["status"].as_str(), rest["refundAmount"].clone(), rest["refundedAmount"].clone()), (Some("REFUNDED"), json!(150.5), json!(200.5)));
    act(&server, &shop, &payment, "refund", json!({"amount": 0.01, "reason": "again"})).expect_error(422, "INVALID_STATE_TRANSITION");

    // Every cent is back where it started.
    wallet_at(&server, &alice, &payer, json!(1000), json!(0));
    wallet_at(&server, &shop, &merchant, json!(0), json!(0));
    let view = payment_when(&server, &alice, &payment, |p| p["status"] == "REFUNDED");
    assert_eq!((view["capturedAmount"].clone(), view["refundedAmount"].clone(), view["version"].clone()), (json!(200.5), json!(200.5), json!(4)));
    let history = server.get(&alice, &format!("/api/v2/wallets/{payer}/transactions")).expect(200).clone();
    let lines: Vec<_> =
        history["items"].as_array().unwrap().iter().map(|i| (i["transactionType"].as_str().unwrap().to_string(), i["amount"].clone())).collect();
    let expected: Vec<(String, Value)> =
        vec![("refund".into(), json!(150.5)), ("refund".into(), json!(50)), ("payment".into(), json!(200.5)), ("deposit".into(), json!(1000))];
    assert_eq!(lines, expected);
    let merchant_history = server.get(&shop, &format!("/api/v2/wallets/{merchant}/transactions")).expect(200).clone();
    let kinds: Vec<_> = merchant_history["items"].as_array().unwrap().iter().map(|i| i["transactionType"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["payment_refund", "payment_refund", "payment_received"]);
}

#[test]
fn a_void_releases_the_hold_and_ends_the_payment() {
    let server = Server::start("payments-void");
    let (alice, shop, payer, merchant) = parties(&server);
    let payment = authorized(&server, &alice, &payer, &merchant, "100");
    wallet_at(&server, &alice, &payer, json!(1000), json!(100));
    let voided = server.request("POST", &format!("/api/v2/commands/payments/{payment}/void"), Some(&shop), &[], None).expect(200).clone();
    assert_eq!((voided["status"].as_str(), voided["releasedAmount"].clone()), (Some("VOIDED"), json!(100)));
    let view = wallet_at(&server, &alice, &payer, json!(1000), json!(0));
    assert_eq!(view["available"], json!(1000));
    act(&server, &shop, &payment, "void", json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    act(&server, &shop, &payment, "capture", json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    act(&server, &shop, &payment, "refund", json!({"reason": "x"})).expect_error(422, "INVALID_STATE_TRANSITION");
    payment_when(&server, &alice, &payment, |p| p["status"] == "VOIDED");
    wallet_at(&server, &shop, &merchant, json!(0), json!(0));
}

#[test]
fn authorisations_are_refused_with_the_contract_codes() {
    let server = Server::start("payments-refused");
    let (alice, shop, payer, merchant) = parties(&server);
    authorize(&server, &alice, &payer, &merchant, "1000.01").expect_error(422, "INSUFFICIENT_FUNDS");
    authorized(&server, &alice, &payer, &merchant, "600");
    let refusal = authorize(&server, &alice, &payer, &merchant, "400.01");
    refusal.expect_error(422, "INSUFFICIENT_FUNDS");
    assert!(refusal.body["message"].as_str().unwrap().contains("has 400.00 EGP"), "{}", refusal.body);
    authorize(&server, &alice, &payer, &payer, "1").expect_error(422, "SAME_WALLET");

    let dollars = server.post(&shop, "/api/v2/commands/wallets/create", json!({"walletType": "merchant", "currency": "USD"})).expect(201)["walletId"]
        .as_str()
        .unwrap()
        .to_string();
    server.post(&shop, &format!("/api/v2/commands/wallets/{dollars}/activate"), json!({})).expect(200);
    authorize(&server, &alice, &payer, &dollars, "1").expect_error(422, "CURRENCY_MISMATCH");
    let pending = server.create_wallet(&shop);
    authorize(&server, &alice, &payer, &pending, "1").expect_error(422, "WALLET_NOT_ACTIVE");
    let suspended_payer = server.active_wallet(&alice, Some("10"));
    server.post(&server.token("root", "admin"), &format!("/api/v2/commands/wallets/{suspended_payer}/suspend"), json!({"reason": "kyc"})).expect(200);
    authorize(&server, &alice, &suspended_payer, &merchant, "1").expect_error(422, "WALLET_NOT_ACTIVE");
    let missing = uuid::Uuid::now_v7().to_string();
    authorize(&server, &alice, &payer, &missing, "1").expect_error(404, "NOT_FOUND");
    authorize(&server, &alice, &payer, &merchant, "0").expect_error(400, "VALIDATION_ERROR");
    authorize(&server, &alice, &payer, &merchant, "1.001").expect_error(400, "VALIDATION_ERROR");
    server
        .post(&alice, "/api/v2/commands/payments", json!({"payerWalletId": payer, "merchantWalletId": merchant, "amount": 1}))
        .expect_error(400, "VALIDATION_ERROR");
    // Only the first authorisation holds anything.
    wallet_at(&server, &alice, &payer, json!(1000), json!(600));
}

#[test]
fn only_the_parties_and_admins_act_and_read() {
    let server = Server::start("payments-auth");
    let (alice, shop, payer, merchant) = parties(&server);
    let (mallory, admin) = (server.token("mallory", ""), server.token("root", "admin"));
    authorize(&server, &mallory, &payer, &merchant, "10").expect_error(403, "FORBIDDEN");
    authorize(&server, &shop, &payer, &merchant, "10").expect_error(403, "FORBIDDEN");
    let payment = authorized(&server, &alice, &payer, &merchant, "100");
    // Capture, void and refund are the merchant's: not the payer's, nor anyone else's.
    for token in [&alice, &mallory] {
        act(&server, token, &payment, "capture", json!({})).expect_error(403, "FORBIDDEN");
        act(&server, token, &payment, "void", json!({})).expect_error(403, "FORBIDDEN");
        act(&server, token, &payment, "refund", json!({"reason": "x"})).expect_error(403, "FORBIDDEN");
    }
    let path = format!("/api/v2/payments/{payment}");
    for token in [&alice, &shop, &admin] {
        payment_when(&server, token, &payment, |p| p["status"] == "AUTHORIZED");
    }
    server.get(&mallory, &path).expect_error(403, "FORBIDDEN");
    // An admin may act for the merchant.
    act(&server, &admin, &payment, "capture", json!({"amount": 40})).expect(200);
    act(&server, &admin, &payment, "refund", json!({"reason": "goodwill"})).expect(200);
    let unknown = uuid::Uuid::now_v7();
    server.get(&admin, &format!("/api/v2/payments/{unknown}")).expect_error(404, "NOT_FOUND");
    act(&server, &shop, &unknown.to_string(), "capture", json!({})).expect_error(404, "NOT_FOUND");
    server.get(&admin, "/api/v2/payments/not-a-uuid").expect_error(400, "VALIDATION_ERROR");
    server.request("GET", &path, None, &[], None).expect_error(401, "UNAUTHENTICATED");
}

#[test]
fn idempotent_retries_replay_the_answer_and_hold_once() {
    let server = Server::start("payments-idempotency");
    let (alice, shop, payer, merchant) = parties(&server);
    let body = format!(r#"{{"payerWalletId": "{payer}", "merchantWalletId": "{merchant}", "amount": 250, "reference": "ORDER-7"}}"#);
    let key = [("Idempotency-Key", "pay-1")];
    let first = server.request("POST", "/api/v2/commands/payments", Some(&alice), &key, Some(&body));
    let again = server.request("POST", "/api/v2/commands/payments", Some(&alice), &key, Some(&body));
    assert_eq!((first.status, again.status, &first.body), (201, 201, &again.body));
    assert_eq!((again.header("idempotent-replayed"), again.header("location")), (Some("true"), first.header("location")));
    let payment = first.body["paymentId"].as_str().unwrap().to_string();
    let changed = body.replace("250", "251");
    server.request("POST", "/api/v2/commands/payments", Some(&alice), &key, Some(&changed)).expect_error(422, "IDEMPOTENCY_KEY_REUSED");

    let capture = format!("/api/v2/commands/payments/{payment}/capture");
    let c1 = server.request("POST", &capture, Some(&shop), &[("Idempotency-Key", "cap-1")], Some(r#"{"amount": 100}"#));
    let c2 = server.request("POST", &capture, Some(&shop), &[("Idempotency-Key", "cap-1")], Some(r#"{"amount": 100}"#));
    assert_eq!((c1.status, c2.status, &c1.body), (200, 200, &c2.body));
    let refund = format!("/api/v2/commands/payments/{payment}/refund");
    let r1 = server.request("POST", &refund, Some(&shop), &[("Idempotency-Key", "ref-1")], Some(r#"{"amount": 30, "reason": "x"}"#));
    let r2 = server.request("POST", &refund, Some(&shop), &[("Idempotency-Key", "ref-1")], Some(r#"{"amount": 30, "reason": "x"}"#));
    assert_eq!((r1.status, &r1.body), (200, &r2.body));
    assert_eq!(r1.body["status"], "PARTIALLY_REFUNDED");

    // One hold of 250, one capture of 100, one refund of 30.
    wallet_at(&server, &alice, &payer, json!(930), json!(0));
    wallet_at(&server, &shop, &merchant, json!(70), json!(0));
    let view = payment_when(&server, &alice, &payment, |p| p["version"] == 3);
    assert_eq!((view["capturedAmount"].clone(), view["refundedAmount"].clone()), (json!(100), json!(30)));
}

#[test]
fn concurrent_authorisations_never_hold_more_than_the_balance_and_money_is_conserved() {
    let server = Server::start("payments-concurrent");
    let (alice, shop, payer, merchant) = parties(&server);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20).map(|_| scope.spawn(|| authorize(&server, &alice, &payer, &merchant, "70"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let payments: Vec<String> = replies.iter().filter(|r| r.status == 201).map(|r| r.body["paymentId"].as_str().unwrap().to_string()).collect();
    assert_eq!(payments.len(), 14, "14 × 70 = 980 fits in 1000, a 15th does not");
    for refused in replies.iter().filter(|r| r.status != 201) {
        refused.expect_error(422, "INSUFFICIENT_FUNDS");
    }
    // Captures, voids and refunds in parallel, each payment its own way.
    std::thread::scope(|scope| {
        for (n, payment) in payments.iter().enumerate() {
            let (server, shop) = (&server, &shop);
            scope.spawn(move || match n % 3 {
                0 => {
                    act(server, shop, payment, "capture", json!({"amount": 50})).expect(200);
                }
                1 => {
                    act(server, shop, payment, "capture", json!({})).expect(200);
                    act(server, shop, payment, "refund", json!({"amount": 20, "reason": "partial"})).expect(200);
                }
                _ => {
                    act(server, shop, payment, "void", json!({})).expect(200);
                }
            });
        }
    });
    // 5 captures of 50, 5 of 70 less 20 refunded, 4 voids: the merchant got 500.
    let merchant_view = wallet_at(&server, &shop, &merchant, json!(500), json!(0));
    let payer_view = wallet_at(&server, &alice, &payer, json!(500), json!(0));
    assert_eq!(merchant_view["balance"].as_f64().unwrap() + payer_view["balance"].as_f64().unwrap(), 1000.0, "no money created or lost");
}

#[test]
fn an_authorisation_nobody_captures_expires_and_its_hold_is_released() {
    let server = Server::start_in(support::temp_dir("payments-expiry"), &["--payment-expiry-seconds", "2", "--payment-expiry-sweep-seconds", "1"]);
    let (alice, shop, payer, merchant) = parties(&server);
    let expiring = authorized(&server, &alice, &payer, &merchant, "300");
    let captured = authorized(&server, &alice, &payer, &merchant, "200");
    act(&server, &shop, &captured, "capture", json!({"amount": 150})).expect(200);
    wallet_at(&server, &alice, &payer, json!(850), json!(300));

    let view = server.eventually(&alice, &format!("/api/v2/payments/{expiring}"), Duration::from_secs(15), |p| p["status"] == "EXPIRED");
    assert_eq!((view["capturedAmount"].clone(), view["version"].clone()), (json!(0), json!(2)));
    let wallet = wallet_at(&server, &alice, &payer, json!(850), json!(0));
    assert_eq!(wallet["available"], json!(850));
    act(&server, &shop, &expiring, "capture", json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    act(&server, &shop, &expiring, "void", json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    // The captured one is left alone.
    assert_eq!(payment_when(&server, &alice, &captured, |p| p["status"] != "AUTHORIZED")["status"], "CAPTURED");
    wallet_at(&server, &shop, &merchant, json!(150), json!(0));
}
