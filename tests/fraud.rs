//! End-to-end tests of fraud detection against a real `healthpay serve` process on
//! the embedded SQLite store: the detector follows the event feed, raises alerts on
//! their own streams and suspends through the command path; the admin routes read
//! and resolve them (`docs/API.md`, "Fraud alerts").

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::{temp_dir, Server};

const SETTLE: Duration = Duration::from_secs(10);

fn withdraw(server: &Server, token: &str, wallet: &str, amount: &str) -> support::Reply {
    let body = format!(r#"{{"amount": {amount}, "transactionType": "withdrawal", "reference": "ATM"}}"#);
    server.request("POST", &format!("/api/v2/commands/wallets/{wallet}/debit"), Some(token), &[], Some(&body))
}

fn alerts_of(server: &Server, admin: &str, wallet: &str) -> Vec<Value> {
    server.get(admin, &format!("/api/v2/fraud/alerts?walletId={wallet}")).expect(200)["items"].as_array().unwrap().clone()
}

#[test]
fn a_burst_of_withdrawals_raises_one_alert_suspends_the_wallet_and_only_an_admin_clears_it() {
    let mut server = Server::start_in(temp_dir("fraud-burst"), &["--fraud-detection", "on"]);
    let (alice, admin) = (server.token("alice", ""), server.token("ops", "admin"));
    // Everyday traffic first: the burst's alert can only appear after it was judged.
    let calm = server.active_wallet(&alice, None);
    server.credit(&alice, &calm, "900").expect(200);
    for _ in 0..3 {
        withdraw(&server, &alice, &calm, "20").expect(200);
    }
    let wallet = server.active_wallet(&alice, None);
    server.credit(&alice, &wallet, "500").expect(200);
    let mut accepted = 0;
    for _ in 0..15 {
        if withdraw(&server, &alice, &wallet, "1").status == 200 {
            accepted += 1;
        }
    }
    assert!(accepted > 10, "the suspension follows the burst; it does not undo what was accepted");

    let listed =
        server.eventually(&admin, &format!("/api/v2/fraud/alerts?walletId={wallet}&status=open"), SETTLE, |page| !page["items"].as_array().unwrap().is_empty());
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let alert = &items[0];
    assert_eq!((alert["rule"].as_str(), alert["severity"].as_str(), alert["status"].as_str()), (Some("velocity"), Some("high"), Some("OPEN")));
    assert_eq!(alert["suspendedWallet"], true);
    assert!(alert["observedCount"].as_u64().unwrap() > 10);
    let alert_id = alert["alertId"].as_str().unwrap().to_string();
    assert!(alerts_of(&server, &admin, &calm).is_empty(), "everyday traffic raises nothing");

    let view = server.eventually(&alice, &format!("/api/v2/wallets/{wallet}"), SETTLE, |w| w["status"] == "suspended");
    assert_eq!(view["status"], "suspended");
    withdraw(&server, &alice, &wallet, "1").expect_error(422, "WALLET_NOT_ACTIVE");
    let history = server.get(&alice, &format!("/api/v2/wallets/{wallet}/transactions?limit=200")).expect(200).clone();
    let debits = history["items"].as_array().unwrap().iter().filter(|i| i["type"] == "debit").count();
    assert_eq!(debits, accepted, "every accepted withdrawal is in the books, none twice");

    // The owner may not read, resolve or undo any of it.
    server.get(&alice, "/api/v2/fraud/alerts").expect_error(403, "FORBIDDEN");
    server.get(&alice, &format!("/api/v2/fraud/alerts/{alert_id}")).expect_error(403, "FORBIDDEN");
    let resolve = format!("/api/v2/commands/fraud/alerts/{alert_id}/resolve");
    server.post(&alice, &resolve, json!({"resolution": "false_positive"})).expect_error(403, "FORBIDDEN");
    server.post(&alice, &format!("/api/v2/commands/wallets/{wallet}/activate"), json!({})).expect_error(403, "FORBIDDEN");
    assert_eq!(server.get(&admin, &format!("/api/v2/fraud/alerts/{alert_id}")).expect(200)["status"], "OPEN", "the refusals changed nothing");

    // Bad requests are refused before anything runs.
    server.post(&admin, &resolve, json!({"resolution": "maybe"})).expect_error(400, "VALIDATION_ERROR");
    server.post(&admin, &resolve, json!({"resolution": "false_positive", "note": "x".repeat(513)})).expect_error(400, "VALIDATION_ERROR");
    server.get(&admin, "/api/v2/fraud/alerts?status=closed").expect_error(400, "VALIDATION_ERROR");
    server.get(&admin, "/api/v2/fraud/alerts?walletId=not-a-uuid").expect_error(400, "VALIDATION_ERROR");
    let unknown = uuid::Uuid::now_v7();
    server.get(&admin, &format!("/api/v2/fraud/alerts/{unknown}")).expect_error(404, "NOT_FOUND");
    server.post(&admin, &format!("/api/v2/commands/fraud/alerts/{unknown}/resolve"), json!({"resolution": "false_positive"})).expect_error(404, "NOT_FOUND");

    // An admin resolves it once (idempotently), then lifts the suspension.
    let key = [("Idempotency-Key", "resolve-1")];
    let body = r#"{"resolution": "false_positive", "note": "her own ATM run"}"#;
    let first = server.request("POST", &resolve, Some(&admin), &key, Some(body));
    assert_eq!(first.expect(200)["status"], "RESOLVED");
    let replay = server.request("POST", &resolve, Some(&admin), &key, Some(body));
    assert_eq!(replay.body, first.body);
    server.post(&admin, &resolve, json!({"resolution": "confirmed_fraud"})).expect_error(422, "INVALID_STATE_TRANSITION");
    let resolved = server.eventually(&admin, &format!("/api/v2/fraud/alerts/{alert_id}"), SETTLE, |a| a["status"] == "RESOLVED");
    assert_eq!(
        (resolved["resolution"].as_str(), resolved["resolvedBy"].as_str(), resolved["note"].as_str()),
        (Some("false_positive"), Some("ops"), Some("her own ATM run"))
    );
    server.post(&admin, &format!("/api/v2/commands/wallets/{wallet}/activate"), json!({})).expect(200);
    server.eventually(&alice, &format!("/api/v2/wallets/{wallet}"), SETTLE, |w| w["status"] == "active");

    // A restart delivers the feed from the last saved checkpoint again: nothing new.
    server = server.restart();
    withdraw(&server, &alice, &calm, "1").expect(200);
    server.eventually(&alice, &format!("/api/v2/wallets/{calm}/transactions?limit=1"), SETTLE, |page| page["items"][0]["amount"] == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(alerts_of(&server, &admin, &wallet).len(), 1);
    assert_eq!(server.get(&alice, &format!("/api/v2/wallets/{wallet}")).expect(200)["status"], "active", "a redelivery does not suspend again");
}

#[test]
fn money_leaving_a_new_wallet_and_one_large_movement_raise_their_rules() {
    let server = Server::start_in(temp_dir("fraud-young"), &["--fraud-detection", "on", "--fraud-high-value", "5000"]);
    let (alice, admin) = (server.token("alice", ""), server.token("ops", "admin"));
    let wallet = server.active_wallet(&alice, None);
    server.credit(&alice, &wallet, "8000").expect(200);
    withdraw(&server, &alice, &wallet, "5000").expect(200);
    let page = server.eventually(&admin, &format!("/api/v2/fraud/alerts?walletId={wallet}"), SETTLE, |p| p["items"].as_array().unwrap().len() == 2);
    let mut rules: Vec<&str> = page["items"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    rules.sort();
    assert_eq!(rules, ["high_value", "new_wallet_outflow"]);
    server.eventually(&alice, &format!("/api/v2/wallets/{wallet}"), SETTLE, |w| w["status"] == "suspended");
    let open = server.get(&admin, "/api/v2/fraud/alerts?status=OPEN&limit=1").expect(200).clone();
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    assert!(open["nextCursor"].is_string(), "two open alerts, one a page");
}

#[test]
fn nonsense_thresholds_stop_the_server_before_it_serves() {
    let dir = temp_dir("fraud-flags");
    let out = Command::new(env!("CARGO_BIN_EXE_healthpay"))
        .args(["serve", "--port", "0", "--data-dir", dir.to_str().unwrap(), "--fraud-detection", "on", "--fraud-velocity-count", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fraud rules"), "{}", String::from_utf8_lossy(&out.stderr));
}
