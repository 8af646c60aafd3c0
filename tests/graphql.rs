//! `POST /graphql` end to end, against a real `healthpay serve` process: queries and
//! mutations answer as their REST routes do, strangers are refused (FORBIDDEN in
//! `extensions.code`) without changing anything, an idempotent mutation's retry is
//! the first answer replayed, and over-deep or over-costly queries are refused.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{Reply, Server};

fn graphql(server: &Server, token: &str, query: &str, variables: Value, headers: &[(&str, &str)]) -> Reply {
    let body = json!({"query": query, "variables": variables}).to_string();
    let reply = server.request("POST", "/graphql", Some(token), headers, Some(&body));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// The data of an answer without errors.
#[track_caller]
fn data(reply: &Reply) -> &Value {
    assert!(reply.body.get("errors").is_none(), "unexpected errors: {}", reply.body);
    &reply.body["data"]
}

/// The `extensions.code` of an answer's only error.
#[track_caller]
fn error_code(reply: &Reply) -> String {
    let errors = reply.body["errors"].as_array().unwrap_or_else(|| panic!("no errors: {}", reply.body));
    assert_eq!(errors.len(), 1, "{}", reply.body);
    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", reply.body);
    errors[0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no code: {}", reply.body)).to_string()
}

const CREDIT: &str = "mutation($id: ID!, $amount: Money!) {
    creditWallet(walletId: $id, input: {amount: $amount, transactionType: \"deposit\", reference: \"DEP-1\"}) { success commandId balance version events }
}";

const WALLET: &str = "query($id: ID!) {
    wallet(id: $id) {
        walletId ownerId status balance held available version
        transactions(first: 2) { edges { cursor node { type amount balanceAfter transactionType reference version } } pageInfo { hasNextPage endCursor } }
    }
}";

/// Polls `wallet(id)` until its version is at least `version` (read models follow the events).
fn wallet_at(server: &Server, token: &str, id: &str, version: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = graphql(server, token, WALLET, json!({"id": id}), &[]);
        let wallet = data(&reply)["wallet"].clone();
        if wallet["version"].as_u64() >= Some(version) {
            return wallet;
        }
        assert!(Instant::now() < deadline, "wallet {id} did not reach version {version}: {wallet}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn create_active_wallet(server: &Server, token: &str) -> String {
    let created = graphql(server, token, r#"mutation { createWallet(input: {walletType: "personal", currency: "EGP"}) { walletId version } }"#, json!({}), &[]);
    let id = data(&created)["createWallet"]["walletId"].as_str().unwrap().to_string();
    let activated = graphql(server, token, "mutation($id: ID!) { activateWallet(walletId: $id) { version } }", json!({"id": id}), &[]);
    assert_eq!(data(&activated)["activateWallet"]["version"], 2);
    id
}

#[test]
fn mutations_move_money_and_queries_read_it_back_as_rest_does() {
    let server = Server::start("graphql-flow");
    let alice = server.token("alice", "");
    let source = create_active_wallet(&server, &alice);
    let destination = create_active_wallet(&server, &alice);

    let credited = graphql(&server, &alice, CREDIT, json!({"id": source, "amount": 1000}), &[]);
    assert_eq!(data(&credited)["creditWallet"]["balance"], json!(1000));
    let debit =
        "mutation($id: ID!) { debitWallet(walletId: $id, input: {amount: 250.25, transactionType: \"payment\", reference: \"PAY-1\"}) { balance version } }";
    assert_eq!(data(&graphql(&server, &alice, debit, json!({"id": source}), &[]))["debitWallet"], json!({"balance": 749.75, "version": 4}));

    let wallet = wallet_at(&server, &alice, &source, 4);
    assert_eq!((wallet["ownerId"].as_str(), wallet["status"].as_str()), (Some("alice"), Some("active")));
    assert_eq!((wallet["balance"].clone(), wallet["available"].clone(), wallet["held"].clone()), (json!(749.75), json!(749.75), json!(0)));
    let history = &wallet["transactions"];
    let nodes: Vec<_> = history["edges"].as_array().unwrap().iter().map(|e| (e["node"]["type"].clone(), e["node"]["amount"].clone())).collect();
    assert_eq!(nodes, [(json!("debit"), json!(250.25)), (json!("credit"), json!(1000))]);
    assert_eq!(history["pageInfo"], json!({"hasNextPage": true, "endCursor": "3"}));
    // The next page, from the cursor: the opening (the version 1 creation records no movement).
    let next = graphql(
        &server,
        &alice,
        "query($id: ID!, $after: String) { wallet(id: $id) { transactions(first: 2, after: $after) { edges { node { version } } pageInfo { hasNextPage } } } }",
        json!({"id": source, "after": "3"}),
        &[],
    );
    assert_eq!(data(&next)["wallet"]["transactions"]["pageInfo"]["hasNextPage"], json!(false));

    let mine = graphql(&server, &alice, "{ myWallets { walletId } }", json!({}), &[]);
    let ids: Vec<_> = data(&mine)["myWallets"].as_array().unwrap().iter().map(|w| w["walletId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [source.clone(), destination.clone()]);

    let transfer = "mutation($from: ID!, $to: ID!) { createTransfer(input: {sourceWalletId: $from, destinationWalletId: $to, amount: 100, reference: \"TXF-1\"}) { transferId status } }";
    let accepted = graphql(&server, &alice, transfer, json!({"from": source, "to": destination}), &[]);
    let transfer_id = data(&accepted)["createTransfer"]["transferId"].as_str().unwrap().to_string();
    assert_eq!(data(&accepted)["createTransfer"]["status"], "PENDING");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let read = graphql(&server, &alice, "query($id: ID!) { transfer(id: $id) { status amount sourceWalletId } }", json!({"id": transfer_id}), &[]);
        let status = read.body["data"]["transfer"]["status"].clone();
        if status == "COMPLETED" {
            assert_eq!(read.body["data"]["transfer"]["amount"], json!(100));
            break;
        }
        assert!(Instant::now() < deadline, "transfer did not complete: {}", read.body);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Both wallets in one request, one batched read of the store.
    let both = graphql(&server, &alice, "query($ids: [ID!]!) { wallets(ids: $ids) { walletId balance } }", json!({"ids": [source, destination]}), &[]);
    let balances: Vec<_> = data(&both)["wallets"].as_array().unwrap().iter().map(|w| w["walletId"].as_str().unwrap().to_string()).collect();
    assert_eq!(balances, [source, destination]);
}

#[test]
fn a_card_answers_with_its_beneficiaries_spend_and_claims_in_one_request() {
    let server = Server::start("graphql-card");
    let insurer = server.token("insurer-1", "insurer");
    let alice = server.token("alice", "");
    let sponsor = create_active_wallet(&server, &insurer);
    graphql(&server, &insurer, CREDIT, json!({"id": sponsor, "amount": 5000}), &[]);
    let issue = "mutation($sponsor: ID!) { issueMedcard(input: {holderId: \"alice\", sponsorWalletId: $sponsor, planName: \"Gold\", coveragePercent: 80, monthlyLimit: 1000, expiresAt: \"2030-01-01T00:00:00Z\"}) { medcardId status } }";
    let issued = graphql(&server, &insurer, issue, json!({"sponsor": sponsor}), &[]);
    let card = data(&issued)["issueMedcard"]["medcardId"].as_str().unwrap().to_string();
    graphql(&server, &insurer, "mutation($id: ID!) { activateMedcard(medcardId: $id) { status } }", json!({"id": card}), &[]);
    let beneficiary = uuid::Uuid::now_v7().to_string();
    let add = "mutation($id: ID!, $b: ID!) { addBeneficiary(medcardId: $id, input: {beneficiaryId: $b, name: \"Alice\", relationship: \"self\"}) { version } }";
    data(&graphql(&server, &alice, add, json!({"id": card, "b": beneficiary}), &[]));

    let query = "query($id: ID!) { medcard(id: $id) { holderId status beneficiaries { beneficiaryId name } spend { spent remaining monthlyLimit claimCount } claims(first: 5) { items { claimId } nextCursor } } }";
    let deadline = Instant::now() + Duration::from_secs(5);
    let card_view = loop {
        let reply = graphql(&server, &alice, query, json!({"id": card}), &[]);
        if reply.body["errors"].is_null() && reply.body["data"]["medcard"]["beneficiaries"].as_array().is_some_and(|b| !b.is_empty()) {
            break reply.body["data"]["medcard"].clone();
        }
        assert!(Instant::now() < deadline, "card not readable: {}", reply.body);
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((card_view["holderId"].as_str(), card_view["status"].as_str()), (Some("alice"), Some("ACTIVE")));
    assert_eq!(card_view["beneficiaries"], json!([{"beneficiaryId": beneficiary, "name": "Alice"}]));
    assert_eq!(card_view["spend"], json!({"spent": 0, "remaining": 1000, "monthlyLimit": 1000, "claimCount": 0}));
    assert_eq!(card_view["claims"], json!({"items": [], "nextCursor": null}));

    // A stranger reads neither the card nor its parts.
    let mallory = server.token("mallory", "");
    assert_eq!(error_code(&graphql(&server, &mallory, query, json!({"id": card}), &[])), "FORBIDDEN");
    let spend = graphql(&server, &mallory, "query($id: ID!) { medcardClaims(medcardId: $id) { nextCursor } }", json!({"id": card}), &[]);
    assert_eq!(error_code(&spend), "FORBIDDEN");
}

#[test]
fn a_stranger_is_refused_with_forbidden_and_nothing_changes() {
    let server = Server::start("graphql-stranger");
    let alice = server.token("alice", "");
    let mallory = server.token("mallory", "");
    let wallet = create_active_wallet(&server, &alice);
    graphql(&server, &alice, CREDIT, json!({"id": wallet, "amount": 500}), &[]);
    let before = wallet_at(&server, &alice, &wallet, 3);

    let debit = "mutation($id: ID!) { debitWallet(walletId: $id, input: {amount: 500, transactionType: \"payment\", reference: \"STEAL\"}) { balance } }";
    let refused = graphql(&server, &mallory, debit, json!({"id": wallet}), &[]);
    assert_eq!(error_code(&refused), "FORBIDDEN");
    assert_eq!(refused.body["errors"][0]["extensions"]["statusCode"], 403);
    assert_eq!(refused.body["data"], Value::Null);
    for (query, field) in [(WALLET, "wallet"), ("query($id: ID!) { wallets(ids: [$id]) { balance } }", "wallets")] {
        let read = graphql(&server, &mallory, query, json!({"id": wallet}), &[]);
        assert_eq!(error_code(&read), "FORBIDDEN", "{field}");
    }
    let suspend = graphql(&server, &alice, "mutation($id: ID!) { suspendWallet(walletId: $id, reason: \"mine\") { version } }", json!({"id": wallet}), &[]);
    assert_eq!(error_code(&suspend), "FORBIDDEN", "suspending is admin only");
    // Fraud alerts are for operators: not even a wallet's owner reads or resolves them.
    let alerts = graphql(&server, &alice, "query($id: ID!) { fraudAlerts(walletId: $id) { nextCursor } }", json!({"id": wallet}), &[]);
    assert_eq!(error_code(&alerts), "FORBIDDEN", "fraudAlerts");
    let resolve = "mutation($id: ID!) { resolveFraudAlert(alertId: $id, input: {resolution: \"false_positive\"}) { status } }";
    assert_eq!(error_code(&graphql(&server, &alice, resolve, json!({"id": uuid::Uuid::now_v7()}), &[])), "FORBIDDEN", "resolveFraudAlert");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(wallet_at(&server, &alice, &wallet, 3), before, "the refusals changed nothing");
    // The REST view agrees.
    assert_eq!(server.get(&alice, &format!("/api/v2/wallets/{wallet}")).expect(200)["version"], 3);

    // The other codes of the REST error bodies.
    let overdraft = "mutation($id: ID!) { debitWallet(walletId: $id, input: {amount: 501, transactionType: \"payment\", reference: \"BIG\"}) { balance } }";
    assert_eq!(error_code(&graphql(&server, &alice, overdraft, json!({"id": wallet}), &[])), "INSUFFICIENT_FUNDS");
    assert_eq!(error_code(&graphql(&server, &alice, CREDIT, json!({"id": wallet, "amount": 0.001}), &[])), "VALIDATION_ERROR");
    assert_eq!(error_code(&graphql(&server, &alice, CREDIT, json!({"id": "not-a-uuid", "amount": 1}), &[])), "VALIDATION_ERROR");
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(error_code(&graphql(&server, &alice, WALLET, json!({"id": missing}), &[])), "NOT_FOUND");
    // No token: refused before any resolver, with the REST error body.
    server.request("POST", "/graphql", None, &[], Some(r#"{"query": "{ myWallets { walletId } }"}"#)).expect_error(401, "UNAUTHENTICATED");
    server.request("POST", "/graphql", Some(&alice), &[], Some(r#"[{"query": "{ myWallets { walletId } }"}]"#)).expect_error(400, "VALIDATION_ERROR");
}

#[test]
fn an_idempotent_mutation_retried_answers_the_first_answer_and_credits_once() {
    let server = Server::start("graphql-idempotent");
    let alice = server.token("alice", "");
    let wallet = create_active_wallet(&server, &alice);
    let key = [("Idempotency-Key", "gql-dep-1")];
    let first = graphql(&server, &alice, CREDIT, json!({"id": wallet, "amount": 70}), &key);
    let retry = graphql(&server, &alice, CREDIT, json!({"id": wallet, "amount": 70}), &key);
    assert_eq!(data(&retry), data(&first), "the same command id, version and events");
    assert_eq!((first.header("idempotent-replayed"), retry.header("idempotent-replayed")), (None, Some("true")));
    // The same key for another request is refused, as REST refuses it.
    let other = graphql(&server, &alice, CREDIT, json!({"id": wallet, "amount": 71}), &key);
    assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED");
    // The same command through REST with the same key is the same request: replayed too.
    let rest = server.request(
        "POST",
        &format!("/api/v2/commands/wallets/{wallet}/credit"),
        Some(&alice),
        &key,
        Some(r#"{"amount": 70, "transactionType": "deposit", "reference": "DEP-1"}"#),
    );
    assert_eq!((rest.status, rest.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(wallet_at(&server, &alice, &wallet, 3)["balance"], json!(70), "credited once");
}

#[test]
fn over_deep_or_over_costly_queries_are_refused_before_any_read() {
    let server = Server::start("graphql-limits");
    let alice = server.token("alice", "");
    let wallet = create_active_wallet(&server, &alice);
    let fields = "walletId balance transactions(first: 200) { edges { node { amount balanceAfter reference occurredAt } } }";
    let costly: String = (0..20).map(|i| format!("w{i}: wallet(id: $id) {{ {fields} }} ")).collect();
    let refused = graphql(&server, &alice, &format!("query($id: ID!) {{ {costly} }}"), json!({"id": wallet}), &[]);
    assert_eq!(refused.body["data"], Value::Null);
    assert!(refused.body["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{}", refused.body);
    assert_eq!(error_code(&refused), "VALIDATION_ERROR");

    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }";
    let refused = graphql(&server, &alice, deep, json!({}), &[]);
    assert!(refused.body["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{}", refused.body);
    assert_eq!(error_code(&refused), "VALIDATION_ERROR");
    // A malformed query, an unknown field, an amount given as a string: the same code.
    for query in [
        "{ myWallets { walletId }",
        "{ myWallets { secret } }",
        "mutation { createWallet(input: {walletType: \"personal\", initialBalance: \"5\"}) { version } }",
    ] {
        assert_eq!(error_code(&graphql(&server, &alice, query, json!({}), &[])), "VALIDATION_ERROR", "{query}");
    }
    // Introspection itself is on by default.
    assert!(data(&graphql(&server, &alice, "{ __schema { queryType { name } } }", json!({}), &[]))["__schema"].is_object());
}

#[test]
fn introspection_is_off_with_the_setting() {
    let server = Server::start_in(support::temp_dir("graphql-no-introspection"), &["--graphql-introspection", "false"]);
    let alice = server.token("alice", "");
    let reply = graphql(&server, &alice, "{ __schema { types { name } } }", json!({}), &[]);
    // async-graphql answers a disabled introspection field with null.
    assert_eq!(reply.body["data"]["__schema"], Value::Null, "{}", reply.body);
    assert!(data(&graphql(&server, &alice, "{ myWallets { walletId } }", json!({}), &[]))["myWallets"].is_array());
}

/// A `graphql-transport-ws` client over a blocking socket.
struct Subscriber {
    socket: tungstenite::WebSocket<std::net::TcpStream>,
}

impl Subscriber {
    /// Connects and sends `connection_init` with `payload`; the server's first answer.
    fn connect(server: &Server, payload: Value) -> (Subscriber, Value) {
        use tungstenite::client::IntoClientRequest;
        let stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = format!("ws://127.0.0.1:{}/graphql/ws", server.port()).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        let (socket, response) = tungstenite::client(request, stream).unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
        let mut subscriber = Subscriber { socket };
        subscriber.send(json!({"type": "connection_init", "payload": payload}));
        let first = subscriber.next();
        (subscriber, first)
    }

    fn send(&mut self, message: Value) {
        self.socket.send(tungstenite::Message::text(message.to_string())).unwrap();
    }

    /// The next message (a close frame as `{"close": code, "reason": text}`).
    fn next(&mut self) -> Value {
        loop {
            match self.socket.read().expect("a message within 5 s") {
                tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                tungstenite::Message::Close(frame) => {
                    return json!({"close": frame.as_ref().map(|f| u16::from(f.code)), "reason": frame.map(|f| f.reason.to_string())})
                }
                _ => continue,
            }
        }
    }

    fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}));
    }
}

const WALLET_UPDATED: &str = "subscription($id: ID!) { walletUpdated(walletId: $id) { balance version } }";

#[test]
fn a_subscription_receives_a_balance_change_within_a_second_of_the_answer() {
    let server = Server::start("graphql-live");
    let alice = server.token("alice", "");
    let wallet = create_active_wallet(&server, &alice);
    wallet_at(&server, &alice, &wallet, 2);
    let (mut live, ack) = Subscriber::connect(&server, json!({"authorization": format!("Bearer {alice}")}));
    assert_eq!(ack["type"], "connection_ack");
    live.subscribe("w", WALLET_UPDATED, json!({"id": wallet}));
    let now = live.next();
    assert_eq!((now["type"].as_str(), now["id"].as_str()), (Some("next"), Some("w")), "{now}");
    assert_eq!(now["payload"]["data"]["walletUpdated"], json!({"balance": 0, "version": 2}));

    for (amount, balance, version) in [("1000", json!(1000), 3), ("250.5", json!(1250.5), 4)] {
        let answered = server.credit(&alice, &wallet, amount);
        answered.expect(200);
        let at = Instant::now();
        let update = live.next();
        let waited = at.elapsed();
        assert_eq!(update["payload"]["data"]["walletUpdated"], json!({"balance": balance, "version": version}), "{update}");
        assert!(waited < Duration::from_secs(1), "the update came {waited:?} after the answer");
    }
    live.send(json!({"id": "w", "type": "complete"}));

    // A transfer, followed to its end.
    let other = create_active_wallet(&server, &alice);
    let transfer_id = server.transfer(&alice, &wallet, &other, "50").expect(202)["transferId"].as_str().unwrap().to_string();
    // A view not projected yet is NOT_FOUND, as on REST: subscribe once it exists.
    server.eventually(&alice, &format!("/api/v2/transfers/{transfer_id}"), Duration::from_secs(5), |_| true);
    live.subscribe("t", "subscription($id: ID!) { transferStatus(transferId: $id) { status } }", json!({"id": transfer_id}));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let update = live.next();
        if update["id"] != "t" {
            continue; // the end of "w"
        }
        if update["payload"]["data"]["transferStatus"]["status"] == "COMPLETED" {
            break;
        }
        assert!(Instant::now() < deadline && update["type"] == "next", "{update}");
    }
}

#[test]
fn a_subscription_is_refused_to_a_stranger_and_a_connection_to_no_token() {
    let server = Server::start("graphql-live-refused");
    let alice = server.token("alice", "");
    let mallory = server.token("mallory", "");
    let wallet = create_active_wallet(&server, &alice);
    wallet_at(&server, &alice, &wallet, 2);

    let (mut stranger, ack) = Subscriber::connect(&server, json!({"token": mallory}));
    assert_eq!(ack["type"], "connection_ack");
    stranger.subscribe("w", WALLET_UPDATED, json!({"id": wallet}));
    // The refusal, then the end of the subscription: nothing of the wallet, ever.
    let refused = stranger.next();
    assert_eq!((refused["type"].as_str(), &refused["payload"]["data"]), (Some("next"), &Value::Null), "{refused}");
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    assert_eq!(stranger.next(), json!({"id": "w", "type": "complete"}));
    stranger.subscribe("m", WALLET_UPDATED, json!({"id": uuid::Uuid::now_v7().to_string()}));
    assert_eq!(stranger.next()["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(stranger.next(), json!({"id": "m", "type": "complete"}));

    for payload in [json!({}), json!({"authorization": "Bearer not-a-token"})] {
        // async-graphql closes a refused connection_init as a protocol error, with the reason.
        let (_, refused) = Subscriber::connect(&server, payload.clone());
        assert_eq!(refused["close"], 1002, "{payload}: {refused}");
        assert!(refused["reason"].as_str().unwrap().contains("token"), "{refused}");
    }
}

#[test]
fn a_connection_holds_at_most_32_live_subscriptions_and_gets_a_place_back_when_one_completes() {
    let server = Server::start("graphql-live-cap");
    let alice = server.token("alice", "");
    let wallet = create_active_wallet(&server, &alice);
    wallet_at(&server, &alice, &wallet, 2);
    let (mut live, _) = Subscriber::connect(&server, json!({"token": alice}));
    for i in 0..32 {
        live.subscribe(&format!("s{i}"), WALLET_UPDATED, json!({"id": wallet}));
        let first = live.next();
        assert_eq!((first["id"].as_str(), &first["payload"]["data"]["walletUpdated"]["version"]), (Some(format!("s{i}").as_str()), &json!(2)), "{first}");
    }
    live.subscribe("one-too-many", WALLET_UPDATED, json!({"id": wallet}));
    let refused = live.next();
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS", "{refused}");
    assert_eq!(live.next(), json!({"id": "one-too-many", "type": "complete"}));

    // Completing one gives its place back.
    live.send(json!({"id": "s0", "type": "complete"}));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        live.subscribe("again", WALLET_UPDATED, json!({"id": wallet}));
        let mut answer = live.next();
        while answer["id"] == "s0" {
            answer = live.next(); // the server's end of the completed one
        }
        if answer["payload"]["data"]["walletUpdated"]["version"] == 2 {
            break;
        }
        // The complete may not have been handled yet: the refusal, then its end.
        assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS", "{answer}");
        assert_eq!(live.next()["type"], "complete");
        assert!(Instant::now() < deadline, "the completed subscription's place never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every one of them still follows the wallet.
    server.credit(&alice, &wallet, "5").expect(200);
    let mut updated = std::collections::BTreeSet::new();
    while updated.len() < 32 {
        let update = live.next();
        assert_eq!(update["payload"]["data"]["walletUpdated"]["version"], 3, "{update}");
        updated.insert(update["id"].as_str().unwrap().to_string());
    }
    assert!(updated.contains("again") && !updated.contains("s0"), "{updated:?}");
}

#[test]
fn queries_and_subscriptions_over_the_socket_spend_the_callers_query_budget() {
    // Queries: 3 at once, refilled one a second; commands plenty.
    let limits = ["--query-rate-limit", "1", "--query-burst", "3", "--command-rate-limit", "100", "--command-burst", "100"];
    let server = Server::start_in(support::temp_dir("graphql-live-limits"), &limits);
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, None);
    server.eventually(&alice, &format!("/api/v2/wallets/{wallet}"), Duration::from_secs(5), |w| w["version"] == 2);
    std::thread::sleep(Duration::from_millis(3_200)); // the query budget full again
    let (mut live, _) = Subscriber::connect(&server, json!({"token": alice}));

    // A query over the socket is answered (its wallet read batched as over HTTP).
    let query = json!({"id": wallet});
    live.subscribe("q0", "query($id: ID!) { wallet(id: $id) { walletId } }", query.clone());
    let answer = live.next();
    assert_eq!(answer["payload"]["data"]["wallet"]["walletId"], json!(wallet), "{answer}");
    assert_eq!(live.next(), json!({"id": "q0", "type": "complete"}));

    // Then a burst: the budget (3, less the one spent) runs out, and each refusal is
    // RATE_LIMITED with when to retry, whether a query or a subscription.
    let mut refused = Vec::new();
    for i in 1..8 {
        let (id, operation) = if i % 2 == 0 {
            (format!("q{i}"), "query($id: ID!) { wallet(id: $id) { walletId } }")
        } else {
            (format!("s{i}"), "subscription($id: ID!) { walletUpdated(walletId: $id) { version } }")
        };
        live.subscribe(&id, operation, query.clone());
        let answer = live.next();
        if let Some(error) = answer["payload"]["errors"].get(0) {
            assert_eq!((error["extensions"]["code"].as_str(), error["extensions"]["statusCode"].as_u64()), (Some("RATE_LIMITED"), Some(429)), "{answer}");
            assert!(error["extensions"]["retryAfter"].as_u64().is_some_and(|s| s >= 1), "{answer}");
            refused.push(id.clone());
            assert_eq!(live.next(), json!({"id": id, "type": "complete"}));
        } else if id.starts_with('q') {
            assert_eq!(live.next(), json!({"id": id, "type": "complete"}));
        }
    }
    assert!(refused.len() >= 4, "only {refused:?} refused of 7 over a budget of 2");
    assert!(refused.iter().any(|id| id.starts_with('s')) && refused.iter().any(|id| id.starts_with('q')), "{refused:?}");
    let metrics = server.metrics();
    assert!(metrics.contains("healthpay_rate_limited_requests_total{route=\"graphql\",kind=\"query\"}"), "{metrics}");
    assert!(metrics.contains("healthpay_rate_limited_requests_total{route=\"wallet.get\",kind=\"query\"}"), "{metrics}");
}
