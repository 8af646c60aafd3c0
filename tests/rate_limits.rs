//! Per-caller rate limits on the real server: a burst from one token is answered 429
//! `RATE_LIMITED` with `Retry-After`, changing nothing, while another token is served
//! as usual; a refused command retried later with its `Idempotency-Key` runs once.

mod support;

use std::time::Duration;
use support::{temp_dir, Server};

#[test]
fn a_burst_from_one_caller_is_refused_with_retry_after_while_another_is_served_and_a_retry_runs_once() {
    // Commands: 2 a second, 4 at once. Queries have their own, larger, budget.
    let limits = ["--command-rate-limit", "2", "--command-burst", "4", "--query-rate-limit", "100", "--query-burst", "100"];
    let server = Server::start_in(temp_dir("rate-limits"), &limits);
    let (noisy, quiet) = (server.token("noisy", ""), server.token("quiet", ""));

    let wallet = server.active_wallet(&noisy, None); // 2 of the 4
    let credit = |key: &str| {
        let body = r#"{"amount": 10, "transactionType": "deposit", "reference": "DEP"}"#;
        server.request("POST", &format!("/api/v2/commands/wallets/{wallet}/credit"), Some(&noisy), &[("Idempotency-Key", key)], Some(body))
    };
    let replies: Vec<_> = (0..8).map(|i| (format!("burst-{i}"), credit(&format!("burst-{i}")))).collect();
    let admitted: Vec<&String> = replies.iter().filter(|(_, r)| r.status == 200).map(|(key, _)| key).collect();
    let refused: Vec<_> = replies.iter().filter(|(_, r)| r.status != 200).collect();
    // The bucket may have refilled by one while the burst was sent.
    assert!((2..=3).contains(&admitted.len()), "admitted {admitted:?}");
    for (_, reply) in &refused {
        reply.expect_error(429, "RATE_LIMITED");
        let seconds: u64 = reply.header("retry-after").expect("a 429 says when to retry").parse().expect("Retry-After is whole seconds");
        assert!((1..=2).contains(&seconds), "Retry-After {seconds}");
        assert!(reply.header("idempotent-replayed").is_none());
    }

    // The other caller is not slowed, and the noisy one may still read.
    server.create_wallet(&quiet);
    server.get(&noisy, &format!("/api/v2/wallets/{wallet}")).expect(200);

    // A refused credit, retried with its key once the wait is over, runs; retried again,
    // it is the same answer replayed: one credit in all.
    let (retried_key, refusal) = refused[0];
    let wait: u64 = refusal.header("retry-after").unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(100));
    let first = credit(retried_key);
    first.expect(200);
    assert!(first.header("idempotent-replayed").is_none(), "the 429 was not stored as the key's answer");
    std::thread::sleep(Duration::from_secs(1));
    let again = credit(retried_key);
    assert_eq!((again.status, again.header("idempotent-replayed")), (200, Some("true")), "{}", again.body);
    assert_eq!(again.body, first.body);

    // What the refusals changed: nothing. Two lifecycle events plus one credit per admitted request.
    let credited = admitted.len() + 1;
    let balance = server.balance(&noisy, &wallet, 2 + credited as u64);
    assert_eq!(balance, 10.0 * credited as f64, "refused credits moved no money");
    let history = server.get(&noisy, &format!("/api/v2/wallets/{wallet}/transactions?limit=50")).expect(200).clone();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(credited), "{history}");

    let metrics = server.metrics();
    let line = format!("healthpay_rate_limited_requests_total{{route=\"wallet.credit\",kind=\"command\"}} {}", refused.len());
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}

#[test]
fn each_graphql_mutation_spends_a_command_token_and_a_graphql_query_spends_a_query_token() {
    // Commands: 4 at once and barely refilled during the test; queries plenty.
    let limits = ["--command-rate-limit", "1", "--command-burst", "4", "--query-rate-limit", "100", "--query-burst", "100"];
    let server = Server::start_in(temp_dir("rate-limits-graphql"), &limits);
    let noisy = server.token("noisy", "");
    let wallet = server.active_wallet(&noisy, None); // 2 of the 4 command tokens

    // Eight credits in one document: the mutations run in order, each charged as its
    // REST request would be, so the remaining budget (2, or 3 if a token refilled
    // meanwhile) admits the first ones and refuses the rest, which change nothing.
    let fields: String = (0..8)
        .map(|i| {
            format!("c{i}: creditWallet(walletId: \"{wallet}\", input: {{amount: 10, transactionType: \"deposit\", reference: \"G-{i}\"}}) {{ version }}\n")
        })
        .collect();
    let body = serde_json::json!({ "query": format!("mutation {{\n{fields}}}") }).to_string();
    let reply = server.request("POST", "/graphql", Some(&noisy), &[], Some(&body));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let errors = reply.body["errors"].as_array().unwrap_or_else(|| panic!("no refusals: {}", reply.body));
    let credited = 8 - errors.len();
    assert!((2..=3).contains(&credited), "{} credits admitted: {}", credited, reply.body);
    for error in errors {
        assert_eq!((error["extensions"]["code"].as_str(), error["extensions"]["statusCode"].as_u64()), (Some("RATE_LIMITED"), Some(429)), "{error}");
        assert!(error["extensions"]["retryAfter"].as_u64().is_some_and(|s| (1..=4).contains(&s)), "{error}");
    }

    // The command budget is spent, yet GraphQL queries are served: each spends a query
    // token (were they charged as commands, at most one of five could pass).
    let query = serde_json::json!({ "query": format!("{{ wallet(id: \"{wallet}\") {{ balance }} }}") }).to_string();
    for _ in 0..5 {
        let read = server.request("POST", "/graphql", Some(&noisy), &[], Some(&query));
        assert_eq!(read.status, 200, "{}", read.body);
        assert!(read.body.get("errors").is_none(), "{}", read.body);
    }
    let balance = server.balance(&noisy, &wallet, 2 + credited as u64);
    assert_eq!(balance, 10.0 * credited as f64, "refused mutations moved no money");

    let metrics = server.metrics();
    let line = format!("healthpay_rate_limited_requests_total{{route=\"wallet.credit\",kind=\"command\"}} {}", errors.len());
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}
