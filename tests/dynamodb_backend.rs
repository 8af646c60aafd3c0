//! `healthpay serve --backend dynamodb`: the all-in-one server on a DynamoDB
//! endpoint, its projections and sagas fed from the events table's real stream.
//! Needs an endpoint (`./test.sh` passes LocalStack's).

mod support;

use serde_json::json;
use std::time::Duration;
use support::{temp_dir, Server};

fn server() -> Server {
    let endpoint = std::env::var("HEALTHPAY_DYNAMODB_ENDPOINT").expect("needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)");
    let prefix = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    Server::start_in(temp_dir("dynamodb"), &["--backend", "dynamodb", "--endpoint-url", &endpoint, "--table-prefix", &prefix])
}

#[test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT and pass --ignored (./test.sh does)"]
fn the_contract_holds_on_dynamodb_with_the_stream_feeding_the_read_side() {
    let server = server();
    let alice = server.token("alice", "");
    let admin = server.token("ops", "admin");
    let source = server.active_wallet(&alice, Some("1000"));
    let destination = server.active_wallet(&alice, None);
    assert_eq!(server.debit(&alice, &source, "250.25").expect(200)["balance"], json!(749.75));
    let transfer = server.transfer(&alice, &source, &destination, "100").expect(202)["transferId"].as_str().unwrap().to_string();
    let done = server.eventually(&alice, &format!("/api/v2/transfers/{transfer}"), Duration::from_secs(20), |t| t["status"] != "PENDING");
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(server.balance(&alice, &source, 5), 649.75);
    assert_eq!(server.balance(&alice, &destination, 3), 100.0);

    // Concurrent debits serialise on the conditional write: no overdraft, no 409.
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12).map(|_| scope.spawn(|| server.debit(&alice, &destination, "10"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 10);
    replies.iter().filter(|r| r.status != 200).for_each(|r| r.expect_error(422, "INSUFFICIENT_FUNDS"));

    // A refused credit is compensated.
    server.post(&admin, &format!("/api/v2/commands/wallets/{destination}/suspend"), json!({"reason": "kyc"})).expect(200);
    let failed = server.transfer(&alice, &source, &destination, "49.75").expect(202)["transferId"].as_str().unwrap().to_string();
    let done = server.eventually(&alice, &format!("/api/v2/transfers/{failed}"), Duration::from_secs(20), |t| t["status"] != "PENDING");
    assert_eq!((done["status"].as_str(), done["failureReason"].as_str()), (Some("FAILED"), Some("WALLET_NOT_ACTIVE")));
    assert_eq!(server.balance(&alice, &source, 7), 649.75);
}

/// The DynamoDB requests the server's read-side client has sent (`GET /metrics`).
fn read_requests(server: &Server) -> u64 {
    let metrics = server.metrics();
    let line =
        metrics.lines().find(|l| l.starts_with("healthpay_dynamodb_requests_total{client=\"read\"}")).unwrap_or_else(|| panic!("no read counter in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// BENCHMARKS.md's GraphQL line: fifty wallets in one GraphQL query against fifty
/// REST reads, in DynamoDB requests (exact) and latency (median of 20 rounds).
#[test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT and pass --ignored (./test.sh does)"]
fn fifty_wallets_in_one_graphql_query_are_one_batch_get_item() {
    let endpoint = std::env::var("HEALTHPAY_DYNAMODB_ENDPOINT").expect("needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)");
    let prefix = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    // No expiry sweep during the measurement: its reads would be counted too.
    let extra = ["--backend", "dynamodb", "--endpoint-url", &endpoint, "--table-prefix", &prefix, "--payment-expiry-sweep-seconds", "86400"];
    let server = Server::start_in(temp_dir("dynamodb-graphql"), &extra);
    let alice = server.token("alice", "");
    let ids: Vec<String> = (0..50).map(|_| server.active_wallet(&alice, None)).collect();
    for id in &ids {
        server.eventually(&alice, &format!("/api/v2/wallets/{id}"), Duration::from_secs(30), |w| w["version"] == 2);
    }
    let aliased: String = ids.iter().enumerate().map(|(i, id)| format!("w{i}: wallet(id: \"{id}\") {{ walletId balance }} ")).collect();
    let queries = [
        ("GraphQL wallets(ids: 50)", json!({"query": "query($ids: [ID!]!) { wallets(ids: $ids) { walletId balance } }", "variables": {"ids": ids}})),
        ("GraphQL 50 aliased wallet(id:)", json!({"query": format!("{{ {aliased} }}")})),
    ];
    let median = |mut runs: Vec<Duration>| {
        runs.sort();
        runs[runs.len() / 2]
    };
    let rounds = 20;
    let before = read_requests(&server);
    let rest = median(
        (0..rounds)
            .map(|_| {
                let started = std::time::Instant::now();
                for id in &ids {
                    server.get(&alice, &format!("/api/v2/wallets/{id}")).expect(200);
                }
                started.elapsed()
            })
            .collect(),
    );
    let rest_requests = read_requests(&server) - before;
    println!("REST 50 × GET /wallets/{{id}}: {} read requests per round, median {rest:?}", rest_requests / rounds);
    assert_eq!(rest_requests, 50 * rounds);
    for (label, query) in queries {
        let before = read_requests(&server);
        let took = median(
            (0..rounds)
                .map(|_| {
                    let started = std::time::Instant::now();
                    let reply = server.post(&alice, "/graphql", query.clone());
                    assert!(reply.expect(200).get("errors").is_none(), "{}", reply.body);
                    started.elapsed()
                })
                .collect(),
        );
        let requests = read_requests(&server) - before;
        println!("{label}: {} read requests per query, median {took:?} ({:.2} × REST)", requests / rounds, took.as_secs_f64() / rest.as_secs_f64());
        assert_eq!(requests, rounds, "{label}: one BatchGetItem per query");
    }
}
