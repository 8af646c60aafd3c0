//! SIGKILL in the middle of a burst of commands: nothing acknowledged is lost, and
//! after a restart the read models and the unfinished transfers catch up.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use support::Server;

#[test]
fn a_killed_server_loses_no_acknowledged_command_and_catches_up_after_restart() {
    let server = Server::start("crash");
    let alice = server.token("alice", "");
    let a = server.active_wallet(&alice, Some("10000"));
    let b = server.active_wallet(&alice, Some("10000"));

    let acked_debits = Mutex::new(Vec::<String>::new());
    let acked_transfers = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let (server, alice, a, b) = (&server, &alice, &a, &b);
            let (acked_debits, acked_transfers, stop) = (&acked_debits, &acked_transfers, &stop);
            scope.spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let reference = format!("W{worker}-{i}");
                    let (path, body) = if i % 3 == 0 {
                        let (from, to) = if worker % 2 == 0 { (a, b) } else { (b, a) };
                        (
                            "/api/v2/commands/transfers".to_string(),
                            format!(r#"{{"sourceWalletId": "{from}", "destinationWalletId": "{to}", "amount": 1.5, "reference": "{reference}"}}"#),
                        )
                    } else {
                        (
                            format!("/api/v2/commands/wallets/{a}/debit"),
                            format!(r#"{{"amount": 0.25, "transactionType": "payment", "reference": "{reference}"}}"#),
                        )
                    };
                    match server.try_request("POST", &path, Some(alice), &[], Some(&body)) {
                        Ok(reply) if reply.status == 200 => acked_debits.lock().unwrap().push(reference),
                        Ok(reply) if reply.status == 202 => acked_transfers.lock().unwrap().push(reply.body["transferId"].as_str().unwrap().to_string()),
                        Ok(reply) => panic!("unexpected answer during the burst: {} {}", reply.status, reply.body),
                        Err(_) => return, // the server is gone
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(700));
        server.sigkill();
        stop.store(true, Ordering::Relaxed);
    });
    let acked_debits = acked_debits.into_inner().unwrap();
    let acked_transfers = acked_transfers.into_inner().unwrap();
    assert!(
        acked_debits.len() > 20 && !acked_transfers.is_empty(),
        "the burst was too short to mean anything: {} debits, {} transfers",
        acked_debits.len(),
        acked_transfers.len()
    );

    let server = server.restart();
    // Every acknowledged transfer settles: unfinished sagas resumed where they stopped.
    for id in &acked_transfers {
        let done = server.eventually(&alice, &format!("/api/v2/transfers/{id}"), Duration::from_secs(20), |t| t["status"] != "PENDING");
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
    // The read models catch up with everything that was committed, acknowledged or not.
    let history = |wallet: &str| -> Vec<Value> {
        let mut items = vec![];
        let mut cursor = String::new();
        loop {
            let page = server.get(&alice, &format!("/api/v2/wallets/{wallet}/transactions?limit=200&cursor={cursor}")).expect(200).clone();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => return items,
            }
        }
    };
    let settle = |wallet: &str| {
        // Settled: the history ends at the view's version, and stays there.
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let version = server.get(&alice, &format!("/api/v2/wallets/{wallet}")).expect(200)["version"].as_u64().unwrap();
            if version == last {
                return;
            }
            last = version;
        }
    };
    settle(&a);
    settle(&b);
    let (history_a, history_b) = (history(&a), history(&b));
    let references: HashSet<&str> = history_a.iter().filter(|i| i["transactionType"] == "payment").map(|i| i["reference"].as_str().unwrap()).collect();
    for reference in &acked_debits {
        assert!(references.contains(reference.as_str()), "acknowledged debit {reference} was lost");
    }
    // Money is conserved: only payments left the two wallets.
    let minor = |v: &Value| (v.as_f64().unwrap() * 100.0).round() as i64;
    let paid: i64 = history_a.iter().filter(|i| i["transactionType"] == "payment").map(|i| minor(&i["amount"])).sum();
    let balance = |wallet: &str| minor(&server.get(&alice, &format!("/api/v2/wallets/{wallet}")).expect(200)["balance"]);
    assert_eq!(balance(&a) + balance(&b), 2_000_000 - paid);
    // And each view agrees with its own history.
    for (wallet, items) in [(&a, &history_a), (&b, &history_b)] {
        let folded: i64 = items.iter().map(|i| if i["type"] == "credit" { minor(&i["amount"]) } else { -minor(&i["amount"]) }).sum();
        assert_eq!(folded, balance(wallet));
        assert_eq!(minor(&items[0]["balanceAfter"]), balance(wallet));
    }
}
