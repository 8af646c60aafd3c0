//! End-to-end tests of the HTTP contract (`docs/API.md`) against a real
//! `healthpay serve` process on the embedded SQLite store.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::Server;

const SECOND: Duration = Duration::from_secs(1);

fn transfer_settled(server: &Server, token: &str, transfer_id: &str) -> serde_json::Value {
    server.eventually(token, &format!("/api/v2/transfers/{transfer_id}"), Duration::from_secs(10), |t| t["status"] != "PENDING")
}

#[test]
fn the_golden_flow_ends_with_the_right_balances_within_a_second() {
    let server = Server::start("golden");
    let alice = server.token("alice", "");
    let source = server.create_wallet(&alice);
    let destination = server.active_wallet(&alice, None);
    let activated = server.post(&alice, &format!("/api/v2/commands/wallets/{source}/activate"), json!({}));
    assert_eq!(activated.expect(200)["version"], 2);
    let credited = server.credit(&alice, &source, "1000");
    let body = credited.expect(200);
    assert_eq!((body["success"].clone(), body["balance"].clone(), body["version"].clone()), (json!(true), json!(1000), json!(3)));
    assert_eq!(body["walletId"], json!(source));
    assert!(body["commandId"].is_string() && body["events"].as_array().unwrap().len() == 1);
    assert_eq!(server.debit(&alice, &source, "250.25").expect(200)["balance"], json!(749.75));

    let started = Instant::now();
    let reply = server.transfer(&alice, &source, &destination, "100");
    let transfer_id = reply.expect(202)["transferId"].as_str().unwrap().to_string();
    assert_eq!(reply.body["status"], "PENDING");
    assert_eq!(reply.header("location"), Some(format!("/api/v2/transfers/{transfer_id}").as_str()));
    let done = server.eventually(&alice, &format!("/api/v2/transfers/{transfer_id}"), SECOND, |t| t["status"] == "COMPLETED");
    assert_eq!(done["amount"], json!(100));
    let source_view = server.eventually(&alice, &format!("/api/v2/wallets/{source}"), SECOND, |w| w["balance"] == json!(649.75));
    let destination_view = server.eventually(&alice, &format!("/api/v2/wallets/{destination}"), SECOND, |w| w["balance"] == json!(100));
    assert!(started.elapsed() < SECOND, "settled in {:?}", started.elapsed());
    assert_eq!(
        (source_view["status"].as_str(), source_view["ownerId"].as_str(), source_view["walletType"].as_str()),
        (Some("active"), Some("alice"), Some("personal"))
    );
    assert_eq!(destination_view["version"], 3);
    for field in ["walletId", "currency", "kycLevel", "createdAt", "updatedAt"] {
        assert!(source_view[field].is_string(), "{field} in {source_view}");
    }
}

#[test]
fn transfers_to_closed_suspended_or_missing_wallets_fail_and_refund_the_source() {
    let server = Server::start("refund");
    let alice = server.token("alice", "");
    let admin = server.token("root", "admin");
    let source = server.active_wallet(&alice, Some("500"));
    let closed = server.active_wallet(&alice, None);
    server.post(&alice, &format!("/api/v2/commands/wallets/{closed}/close"), json!({"reason": "done"})).expect(200);
    let suspended = server.active_wallet(&alice, None);
    server.post(&admin, &format!("/api/v2/commands/wallets/{suspended}/suspend"), json!({"reason": "kyc review"})).expect(200);
    let missing = uuid::Uuid::now_v7().to_string();

    for (destination, reason) in [(&closed, "WALLET_NOT_ACTIVE"), (&suspended, "WALLET_NOT_ACTIVE"), (&missing, "NOT_FOUND")] {
        let transfer_id = server.transfer(&alice, &source, destination, "120.5").expect(202)["transferId"].as_str().unwrap().to_string();
        let settled = transfer_settled(&server, &alice, &transfer_id);
        assert_eq!((settled["status"].as_str(), settled["failureReason"].as_str()), (Some("FAILED"), Some(reason)), "{settled}");
    }
    // Three debits and three refunds later, the source is whole again.
    let view = server.eventually(&alice, &format!("/api/v2/wallets/{source}"), SECOND * 5, |w| w["version"].as_u64() >= Some(9));
    assert_eq!(view["balance"], json!(500));
    let history = server.get(&alice, &format!("/api/v2/wallets/{source}/transactions?limit=200")).expect(200).clone();
    let kinds: Vec<_> = history["items"].as_array().unwrap().iter().map(|i| i["transactionType"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["refund", "transfer_out", "refund", "transfer_out", "refund", "transfer_out", "deposit"]);
    assert_eq!(server.balance(&alice, &closed, 3), 0.0);
}

#[test]
fn a_transfer_the_source_cannot_cover_fails_without_moving_money() {
    let server = Server::start("poor");
    let alice = server.token("alice", "");
    let (source, destination) = (server.active_wallet(&alice, Some("10")), server.active_wallet(&alice, None));
    let transfer_id = server.transfer(&alice, &source, &destination, "10.01").expect(202)["transferId"].as_str().unwrap().to_string();
    let settled = transfer_settled(&server, &alice, &transfer_id);
    assert_eq!((settled["status"].as_str(), settled["failureReason"].as_str()), (Some("FAILED"), Some("INSUFFICIENT_FUNDS")));
    assert_eq!(server.balance(&alice, &source, 3), 10.0);
    assert_eq!(server.balance(&alice, &destination, 2), 0.0);
}

#[test]
fn a_transfer_to_the_same_wallet_is_refused_before_the_saga_starts() {
    let server = Server::start("same");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("10"));
    server.transfer(&alice, &wallet, &wallet, "1").expect_error(422, "SAME_WALLET");
}

#[test]
fn fifty_concurrent_debits_never_overdraw() {
    let server = Server::start("concurrent");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("1000"));
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50).map(|_| scope.spawn(|| server.debit(&alice, &wallet, "30"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status != 200).collect();
    assert_eq!(ok, 33);
    assert_eq!(refused.len(), 17);
    for reply in refused {
        reply.expect_error(422, "INSUFFICIENT_FUNDS");
    }
    assert_eq!(server.balance(&alice, &wallet, 3 + 33), 10.0);
}

#[test]
fn an_idempotency_key_replays_the_first_answer_and_applies_once() {
    let server = Server::start("idempotency");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("100"));
    let body = r#"{"amount": 40, "transactionType": "payment", "reference": "PAY-9"}"#;
    let path = format!("/api/v2/commands/wallets/{wallet}/debit");
    let first = server.request("POST", &path, Some(&alice), &[("Idempotency-Key", "k-1")], Some(body));
    first.expect(200);
    // Same key, same body (keys in another order): the first answer, byte for byte.
    let reordered = r#"{"reference": "PAY-9", "transactionType": "payment", "amount": 40}"#;
    let again = server.request("POST", &path, Some(&alice), &[("Idempotency-Key", "k-1")], Some(reordered));
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // The alias header names the same key.
    let alias = server.request("POST", &path, Some(&alice), &[("X-Request-ID", "k-1")], Some(body));
    assert_eq!(alias.body, first.body);
    // Same key, different body.
    let other = server.request(
        "POST",
        &path,
        Some(&alice),
        &[("Idempotency-Key", "k-1")],
        Some(r#"{"amount": 41, "transactionType": "payment", "reference": "PAY-9"}"#),
    );
    other.expect_error(422, "IDEMPOTENCY_KEY_REUSED");
    // Keys are the caller's own: bob's "k-1" is another key (and he may not debit alice's wallet).
    let bob = server.token("bob", "");
    server.request("POST", &path, Some(&bob), &[("Idempotency-Key", "k-1")], Some(body)).expect_error(403, "FORBIDDEN");
    assert_eq!(server.balance(&alice, &wallet, 4), 60.0, "applied once");

    // A refusal is an answer too, and replays as such.
    let poor = r#"{"amount": 1000, "transactionType": "payment", "reference": "PAY-10"}"#;
    let refused = server.request("POST", &path, Some(&alice), &[("Idempotency-Key", "k-2")], Some(poor));
    refused.expect_error(422, "INSUFFICIENT_FUNDS");
    server.credit(&alice, &wallet, "5000").expect(200);
    let replayed = server.request("POST", &path, Some(&alice), &[("Idempotency-Key", "k-2")], Some(poor));
    assert_eq!((replayed.status, &replayed.body), (422, &refused.body));

    // A transfer replays its 202 and starts one saga.
    let destination = server.active_wallet(&alice, None);
    let transfer = format!(r#"{{"sourceWalletId": "{wallet}", "destinationWalletId": "{destination}", "amount": 10, "reference": "T"}}"#);
    let t1 = server.request("POST", "/api/v2/commands/transfers", Some(&alice), &[("Idempotency-Key", "t-1")], Some(&transfer));
    let t2 = server.request("POST", "/api/v2/commands/transfers", Some(&alice), &[("Idempotency-Key", "t-1")], Some(&transfer));
    assert_eq!((t1.status, t2.status, &t1.body), (202, 202, &t2.body));
    assert_eq!(t1.header("location"), t2.header("location"));
    transfer_settled(&server, &alice, t1.body["transferId"].as_str().unwrap());
    assert_eq!(server.balance(&alice, &destination, 3), 10.0);
}

#[test]
fn callers_are_authenticated_and_wallets_belong_to_their_owner() {
    let server = Server::start("auth");
    let alice = server.token("alice", "");
    let bob = server.token("bob", "");
    let admin = server.token("root", "admin");
    let wallet = server.active_wallet(&alice, Some("50"));
    let path = format!("/api/v2/wallets/{wallet}");
    server.eventually(&alice, &path, SECOND, |w| w["version"] == 3);

    server.request("GET", &path, None, &[], None).expect_error(401, "UNAUTHENTICATED");
    server.request("GET", &path, Some("not-a-jwt"), &[], None).expect_error(401, "UNAUTHENTICATED");
    let foreign = Server::start("auth-other").token("alice", "");
    server.request("GET", &path, Some(&foreign), &[], None).expect_error(401, "UNAUTHENTICATED");
    server.request("POST", "/api/v2/commands/wallets/create", None, &[], Some(r#"{"walletType": "personal"}"#)).expect_error(401, "UNAUTHENTICATED");

    server.get(&bob, &path).expect_error(403, "FORBIDDEN");
    server.get(&bob, &format!("{path}/transactions")).expect_error(403, "FORBIDDEN");
    server.get(&bob, &format!("{path}/balance")).expect_error(403, "FORBIDDEN");
    server.debit(&bob, &wallet, "1").expect_error(403, "FORBIDDEN");
    server.credit(&bob, &wallet, "1").expect_error(403, "FORBIDDEN");
    server.post(&bob, &format!("/api/v2/commands/wallets/{wallet}/close"), json!({})).expect_error(403, "FORBIDDEN");
    let bobs = server.active_wallet(&bob, None);
    server.transfer(&bob, &wallet, &bobs, "1").expect_error(403, "FORBIDDEN");
    // Suspending is admin only, even for the owner; so is lifting a suspension.
    server.post(&alice, &format!("/api/v2/commands/wallets/{wallet}/suspend"), json!({"reason": "x"})).expect_error(403, "FORBIDDEN");
    server.post(&admin, &format!("/api/v2/commands/wallets/{wallet}/suspend"), json!({"reason": "x"})).expect(200);
    server.post(&alice, &format!("/api/v2/commands/wallets/{wallet}/activate"), json!({})).expect_error(403, "FORBIDDEN");
    server.post(&admin, &format!("/api/v2/commands/wallets/{wallet}/activate"), json!({})).expect(200);

    // Admins may read and act; a transfer is readable by both parties.
    assert_eq!(server.eventually(&admin, &path, SECOND, |w| w["version"] == 5)["status"], "active");
    server.credit(&admin, &wallet, "1").expect(200);
    let transfer_id = server.transfer(&alice, &wallet, &bobs, "2").expect(202)["transferId"].as_str().unwrap().to_string();
    let transfer_path = format!("/api/v2/transfers/{transfer_id}");
    transfer_settled(&server, &alice, &transfer_id);
    server.get(&bob, &transfer_path).expect(200);
    server.get(&server.token("carol", ""), &transfer_path).expect_error(403, "FORBIDDEN");

    let mine = server.get(&alice, "/api/v2/users/me/wallets").expect(200).clone();
    assert_eq!(mine["items"].as_array().unwrap().iter().map(|w| w["walletId"].as_str().unwrap()).collect::<Vec<_>>(), vec![wallet.as_str()]);
}

#[test]
fn bad_input_gets_a_400_with_the_error_body_and_never_a_500() {
    let server = Server::start("validation");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("100"));
    for amount in ["-1", "0", "0.001", "\"abc\"", "1e20", "1000000000.01", "null", "[]", "\"10\""] {
        let reply = server.debit(&alice, &wallet, amount);
        reply.expect_error(400, "VALIDATION_ERROR");
        server.credit(&alice, &wallet, amount).expect_error(400, "VALIDATION_ERROR");
        server.transfer(&alice, &wallet, &uuid::Uuid::now_v7().to_string(), amount).expect_error(400, "VALIDATION_ERROR");
    }
    let debit = format!("/api/v2/commands/wallets/{wallet}/debit");
    let bad_bodies = [
        "{not json",
        "",
        r#"{"transactionType": "payment", "reference": "r"}"#,
        r#"{"amount": 1, "transactionType": "gift", "reference": "r"}"#,
        r#"{"amount": 1, "transactionType": "payment", "reference": "   "}"#,
        r#"{"amount": 1, "transactionType": "deposit", "reference": "r"}"#,
        // Types the ledger writes itself, never a caller.
        r#"{"amount": 1, "transactionType": "claim_payment", "reference": "r"}"#,
        r#"{"amount": 1, "transactionType": "payment_refund", "reference": "r"}"#,
        r#"[1, 2]"#,
        // A field the route does not know is refused, never ignored: this is no USD debit.
        r#"{"amount": 1, "transactionType": "payment", "reference": "r", "currency": "USD"}"#,
    ];
    for body in bad_bodies {
        server.request("POST", &debit, Some(&alice), &[], Some(body)).expect_error(400, "VALIDATION_ERROR");
    }
    let unknown =
        server.request("POST", &debit, Some(&alice), &[], Some(r#"{"amount": 1, "transactionType": "payment", "reference": "r", "currency": "USD"}"#));
    assert!(unknown.body["message"].as_str().unwrap().contains("unknown field `currency`"), "{}", unknown.body);
    let not_an_object = server.request("POST", &debit, Some(&alice), &[], Some("[1, 2]"));
    assert!(not_an_object.body["message"].as_str().unwrap().contains("expected a JSON object"), "{}", not_an_object.body);
    server
        .post(&alice, "/api/v2/commands/wallets/not-a-uuid/debit", json!({"amount": 1, "transactionType": "payment", "reference": "r"}))
        .expect_error(400, "VALIDATION_ERROR");
    server.post(&alice, "/api/v2/commands/wallets/create", json!({"walletType": "savings"})).expect_error(400, "VALIDATION_ERROR");
    for currency in ["egp", "ZZZ", "JPY"] {
        server.post(&alice, "/api/v2/commands/wallets/create", json!({"walletType": "personal", "currency": currency})).expect_error(400, "VALIDATION_ERROR");
    }
    server.post(&alice, "/api/v2/commands/wallets/create", json!({"walletType": "personal", "initialBalance": -5})).expect_error(400, "VALIDATION_ERROR");
    server.get(&alice, &format!("/api/v2/wallets/{wallet}/transactions?limit=0")).expect_error(400, "VALIDATION_ERROR");
    server.get(&alice, &format!("/api/v2/wallets/{wallet}/transactions?limit=201")).expect_error(400, "VALIDATION_ERROR");
    server.get(&alice, &format!("/api/v2/wallets/{wallet}/transactions?cursor=abc")).expect_error(400, "VALIDATION_ERROR");
    server.get(&alice, &format!("/api/v2/wallets/{wallet}/balance?asOf=yesterday")).expect_error(400, "VALIDATION_ERROR");
    server.request("POST", &debit, Some(&alice), &[("Idempotency-Key", &"x".repeat(300))], Some("{}")).expect_error(400, "VALIDATION_ERROR");
    let huge = format!(r#"{{"amount": 1, "transactionType": "payment", "reference": "r", "description": "{}"}}"#, "x".repeat(1 << 20));
    server.request("POST", &debit, Some(&alice), &[], Some(&huge)).expect_error(400, "VALIDATION_ERROR");
    server.get(&alice, &format!("/api/v2/wallets/{}", uuid::Uuid::now_v7())).expect_error(404, "NOT_FOUND");
    server.debit(&alice, &uuid::Uuid::now_v7().to_string(), "1").expect_error(404, "NOT_FOUND");
    server.get(&alice, "/api/v2/nowhere").expect_error(404, "NOT_FOUND");
    // A known path with another method is no route either, as on API Gateway.
    let wrong_method = server.request("GET", "/api/v2/commands/wallets/create", Some(&alice), &[], None);
    wrong_method.expect_error(404, "NOT_FOUND");
    assert_eq!(wrong_method.header("x-correlation-id"), wrong_method.body["correlationId"].as_str());
    // Business rules are 422s.
    let pending = server.create_wallet(&alice);
    server.debit(&alice, &pending, "1").expect_error(422, "WALLET_NOT_ACTIVE");
    server.post(&alice, &format!("/api/v2/commands/wallets/{wallet}/close"), json!({})).expect_error(422, "NON_ZERO_BALANCE");
    server.post(&alice, &format!("/api/v2/commands/wallets/{pending}/close"), json!({})).expect_error(422, "INVALID_STATE_TRANSITION");
    // And none of that moved money.
    assert_eq!(server.balance(&alice, &wallet, 3), 100.0);
    assert!(!server.metrics().contains("outcome=\"INTERNAL\""));
}

#[test]
fn amounts_are_exact_and_history_pages_newest_first() {
    let server = Server::start("history");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, None);
    for _ in 0..3 {
        server.credit(&alice, &wallet, "0.1").expect(200);
    }
    assert_eq!(server.credit(&alice, &wallet, "0.2").expect(200)["balance"], json!(0.5));
    let version = server.debit(&alice, &wallet, "0.3").expect(200)["version"].as_u64().unwrap();
    assert_eq!(server.balance(&alice, &wallet, version), 0.2);

    let base = format!("/api/v2/wallets/{wallet}/transactions");
    let first = server.get(&alice, &format!("{base}?limit=2")).expect(200).clone();
    let items = first["items"].as_array().unwrap();
    assert_eq!((items[0]["type"].as_str(), items[0]["amount"].clone(), items[0]["balanceAfter"].clone()), (Some("debit"), json!(0.3), json!(0.2)));
    assert_eq!(items[1]["amount"], json!(0.2));
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest = server.get(&alice, &format!("{base}?limit=10&cursor={cursor}")).expect(200).clone();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest["nextCursor"], json!(null));
    for item in rest["items"].as_array().unwrap() {
        for field in ["eventId", "type", "amount", "balanceAfter", "transactionType", "reference", "occurredAt", "version"] {
            assert!(!item[field].is_null(), "{field} in {item}");
        }
    }
}

#[test]
fn the_temporal_balance_reads_the_event_store() {
    let server = Server::start("asof");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("100"));
    std::thread::sleep(Duration::from_millis(20));
    let between = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(20));
    server.debit(&alice, &wallet, "40").expect(200);
    let path = format!("/api/v2/wallets/{wallet}/balance");
    let then = server.get(&alice, &format!("{path}?asOf={}", between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).expect(200).clone();
    assert_eq!((then["balance"].clone(), then["version"].clone()), (json!(100), json!(3)));
    let now = server.get(&alice, &path).expect(200).clone();
    assert_eq!((now["balance"].clone(), now["version"].clone(), now["walletId"].clone()), (json!(60), json!(4), json!(wallet)));
    server.get(&alice, &format!("{path}?asOf=2000-01-01T00:00:00Z")).expect_error(404, "NOT_FOUND");
}

#[test]
fn health_and_metrics_tell_how_the_server_is_doing() {
    let server = Server::start("ops");
    let health = server.request("GET", "/health", None, &[], None);
    assert_eq!((health.status, health.body["status"].as_str()), (200, Some("healthy")));
    assert!(health.body["version"].is_string() && health.body["components"]["eventStore"]["status"] == "healthy");
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, None);
    server.debit(&alice, &wallet, "1").expect_error(422, "INSUFFICIENT_FUNDS");
    let reply = server.request("GET", &format!("/api/v2/wallets/{wallet}"), Some(&alice), &[("X-Correlation-Id", "trace-me-42")], None);
    assert_eq!(reply.header("x-correlation-id"), Some("trace-me-42"));
    let scraped = server.request("GET", "/metrics", None, &[], None);
    assert_eq!(scraped.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let metrics = server.metrics();
    for needle in [
        "healthpay_commands_total{route=\"wallet.debit\",outcome=\"INSUFFICIENT_FUNDS\"} 1",
        "healthpay_commands_total{route=\"wallet.create\",outcome=\"ok\"} 1",
        "healthpay_command_duration_seconds_bucket",
        "healthpay_projection_lag_seconds_count",
        "healthpay_feed_lag_events{consumer=\"projections\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start("sigterm");
    let alice = server.token("alice", "");
    server.active_wallet(&alice, Some("1"));
    assert!(server.terminate().success());
}
