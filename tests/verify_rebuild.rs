//! `healthpay verify` and `healthpay rebuild` against a running `healthpay serve`:
//! a healthy ledger verifies clean; read models changed behind the ledger's back are
//! named (exit 1); `rebuild`, with the server still running, puts them right, and
//! `verify` is clean again. On SQLite here; on DynamoDB (`#[ignore]`d) with an
//! endpoint.

mod support;

use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::Duration;
use support::{temp_dir, Server};

const SETTLE: Duration = Duration::from_secs(10);

fn healthpay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healthpay")).args(args).env_remove("HEALTHPAY_BACKEND").env_remove("HEALTHPAY_DATA_DIR").output().expect("healthpay runs")
}

fn text(output: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", output.status.code(), String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Wallets, a deposit and a debit, a completed and a failed transfer, a payment
/// captured and one still authorised; every read model settled. Answers (alice's
/// token, her funded wallet, the destination).
fn some_business(server: &Server) -> (String, String, String) {
    let alice = server.token("alice", "");
    let source = server.active_wallet(&alice, Some("1000"));
    let destination = server.active_wallet(&alice, None);
    let pending = server.create_wallet(&alice);
    server.debit(&alice, &source, "50").expect(200);
    let done = server.transfer(&alice, &source, &destination, "100").expect(202)["transferId"].as_str().unwrap().to_string();
    let failed = server.transfer(&alice, &source, &pending, "30").expect(202)["transferId"].as_str().unwrap().to_string();
    for (transfer, status) in [(&done, "COMPLETED"), (&failed, "FAILED")] {
        let view = server.eventually(&alice, &format!("/api/v2/transfers/{transfer}"), SETTLE, |t| t["status"] != "PENDING");
        assert_eq!(view["status"], status, "{view}");
    }
    let pay = |amount: &str| {
        let body = format!(r#"{{"payerWalletId": "{source}", "merchantWalletId": "{destination}", "amount": {amount}, "reference": "ORDER-1"}}"#);
        server.request("POST", "/api/v2/commands/payments", Some(&alice), &[], Some(&body)).expect(201)["paymentId"].as_str().unwrap().to_string()
    };
    let captured = pay("40");
    server.post(&alice, &format!("/api/v2/commands/payments/{captured}/capture"), json!({"amount": 25})).expect(200);
    pay("5");
    // 1000 − 50 − 100 − 25 = 825, 5 of it held; 100 + 25 on the destination.
    server.eventually(&alice, &format!("/api/v2/wallets/{source}"), SETTLE, |w| w["balance"] == json!(825) && w["held"] == json!(5));
    server.eventually(&alice, &format!("/api/v2/wallets/{destination}"), SETTLE, |w| w["balance"] == json!(125));
    server.eventually(&alice, &format!("/api/v2/payments/{captured}"), SETTLE, |p| p["status"] == "CAPTURED");
    (alice, source, destination)
}

#[track_caller]
fn assert_clean(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("CLEAN"), "{}", text(output));
    assert!(stdout.contains("brought in − taken out = in wallets + in flight + in suspense: balanced"), "{}", text(output));
}

#[test]
fn a_tampered_sqlite_read_model_is_named_by_verify_and_rebuilt_while_the_server_runs() {
    let server = Server::start("verify-rebuild");
    let (alice, source, destination) = some_business(&server);
    let dir = server.data_dir.to_str().unwrap().to_string();

    let healthy = healthpay(&["verify", "--data-dir", &dir]);
    assert_clean(&healthy);
    let report = String::from_utf8_lossy(&healthy.stdout).to_string();
    assert!(report.contains("brought in              1000.00  (deposit 1000.00)"), "{report}");
    assert!(report.contains("taken out                 50.00  (payment 50.00)"), "{report}");
    assert!(report.contains("in wallets               950.00  (3 wallets; 5.00 of it held for authorised payments)"), "{report}");
    let json: Value = serde_json::from_slice(&healthpay(&["verify", "--data-dir", &dir, "--json"]).stdout).unwrap();
    assert_eq!((json["books"]["EGP"]["inWallets"].clone(), json["findings"].clone()), (json!(95_000), json!([])));

    // Behind the ledger's back: a balance in a wallet view, an amount in a history line.
    let db = rusqlite::Connection::open(server.data_dir.join("read.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = db.execute("UPDATE wallet_views SET view = json_set(view, '$.balance', 999999) WHERE wallet_id = ?1", [&source]).unwrap();
    let lines = db.execute("UPDATE transactions SET item = json_set(item, '$.amount', 1) WHERE wallet_id = ?1 AND version = 3", [&destination]).unwrap();
    assert_eq!((changed, lines), (1, 1));
    assert_eq!(server.get(&alice, &format!("/api/v2/wallets/{source}")).expect(200)["balance"], json!(9999.99));

    let drifted = healthpay(&["verify", "--data-dir", &dir]);
    assert_eq!(drifted.status.code(), Some(1), "{}", text(&drifted));
    let stderr = String::from_utf8_lossy(&drifted.stderr);
    assert!(stderr.contains(&format!("wallet#{source}")) && stderr.contains(&format!("wallet#{destination}")), "{}", text(&drifted));
    assert!(stderr.contains("2 aggregates drifted"), "{}", text(&drifted));
    let stdout = String::from_utf8_lossy(&drifted.stdout);
    assert!(stdout.contains("balance: stored 999999, events say 82500"), "{}", text(&drifted));
    assert!(stdout.contains("history line v3: amount: stored 1, events say"), "{}", text(&drifted));
    assert!(stdout.contains(": balanced"), "the books come from the events: {}", text(&drifted));

    // Only the transfers: nothing of theirs drifted.
    let transfers = healthpay(&["rebuild", "--data-dir", &dir, "--projection", "transfer"]);
    assert_eq!(transfers.status.code(), Some(0), "{}", text(&transfers));
    assert!(String::from_utf8_lossy(&transfers.stdout).contains("0 rows rewritten"), "{}", text(&transfers));

    let rebuilt = healthpay(&["rebuild", "--data-dir", &dir]);
    assert_eq!(rebuilt.status.code(), Some(0), "{}", text(&rebuilt));
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("2 rows rewritten on 2 aggregates (1 history line, 1 wallet view)"), "{}", text(&rebuilt));
    assert_eq!(server.get(&alice, &format!("/api/v2/wallets/{source}")).expect(200)["balance"], json!(825));
    assert_clean(&healthpay(&["verify", "--data-dir", &dir]));

    // The server went on projecting all along: new business lands on the rebuilt rows.
    server.credit(&alice, &source, "10").expect(200);
    server.eventually(&alice, &format!("/api/v2/wallets/{source}"), SETTLE, |w| w["balance"] == json!(835));
    assert_clean(&healthpay(&["verify", "--data-dir", &dir]));
}

#[test]
fn verify_without_a_ledger_or_with_a_bad_argument_exits_2() {
    let empty = temp_dir("verify-empty");
    let none = healthpay(&["verify", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no events.db"), "{}", text(&none));
    let bad = healthpay(&["rebuild", "--data-dir", empty.to_str().unwrap(), "--projection", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT and pass --ignored (./test.sh does)"]
fn a_tampered_dynamodb_read_model_is_named_by_verify_and_rebuilt_while_the_server_runs() {
    let endpoint = std::env::var("HEALTHPAY_DYNAMODB_ENDPOINT").expect("needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)");
    let prefix = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    let server = Server::start_in(temp_dir("verify-dynamodb"), &["--backend", "dynamodb", "--endpoint-url", &endpoint, "--table-prefix", &prefix]);
    let (alice, source, destination) = some_business(&server);
    let args = |command: &str| {
        vec![command.to_string(), "--backend".into(), "dynamodb".into(), "--endpoint-url".into(), endpoint.clone(), "--table-prefix".into(), prefix.clone()]
    };
    let run = |command: &str| healthpay(&args(command).iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean(&run("verify"));

    // Behind the ledger's back, through the adapter: a wallet view and a history line.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use shared::ports::{TransactionHistory, WalletViews};
        let client = store_dynamodb::client_from_env(Some(&endpoint)).await;
        let read = store_dynamodb::DynamoReadStore::new(client.clone(), format!("{prefix}-read"));
        let id: uuid::Uuid = source.parse().unwrap();
        let mut view = read.wallet(id).await.unwrap().unwrap();
        view.balance = shared::money::Money::from_minor(1);
        assert_eq!(read.save_wallet(&view, view.version).await.unwrap(), shared::ports::Saved::Written);
        let wallet: uuid::Uuid = destination.parse().unwrap();
        let mut line = read.transactions(wallet, 1, None).await.unwrap().remove(0);
        line.description = Some("forged".into());
        let mut item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = serde_dynamo::aws_sdk_dynamodb_1::to_item(&line).unwrap();
        item.insert("pk".into(), aws_sdk_dynamodb::types::AttributeValue::S(format!("WALLET#{wallet}")));
        item.insert("sk".into(), aws_sdk_dynamodb::types::AttributeValue::S(format!("TX#{:020}", line.version)));
        client.put_item().table_name(format!("{prefix}-read")).set_item(Some(item)).send().await.unwrap();
    });
    let drifted = run("verify");
    assert_eq!(drifted.status.code(), Some(1), "{}", text(&drifted));
    let stderr = String::from_utf8_lossy(&drifted.stderr);
    assert!(stderr.contains(&format!("wallet#{source}")) && stderr.contains(&format!("wallet#{destination}")), "{}", text(&drifted));

    let rebuilt = run("rebuild");
    assert_eq!(rebuilt.status.code(), Some(0), "{}", text(&rebuilt));
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("2 rows rewritten on 2 aggregates"), "{}", text(&rebuilt));
    assert_eq!(server.get(&alice, &format!("/api/v2/wallets/{source}")).expect(200)["balance"], json!(825));
    assert_clean(&run("verify"));
}
