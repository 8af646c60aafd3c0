//! Every GraphQL type answers what its REST route answers: each read model and each
//! command's result, with every field the type has (its selection built from the
//! schema itself), compared with the REST body of the same thing.

mod support;

use api::auth::Caller;
use api::Route;
use serde_json::{json, Map, Value};
use support::{caller, World};

async fn graphql(world: &World, who: &Caller, query: &str, variables: Value) -> Value {
    let answer = world.expect(200, Route::GraphQL, who, &[], json!({"query": query, "variables": variables})).await;
    assert!(answer.get("errors").is_none(), "{query}: {answer}");
    answer["data"].clone()
}

/// The selection of every field of `type_name` without arguments, nested objects included.
async fn selection(world: &World, type_name: &str) -> String {
    let admin = caller("root", &["admin"]);
    let query = "query($name: String!) { __type(name: $name) { fields { name args { name } type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";
    let found = graphql(world, &admin, query, json!({"name": type_name})).await;
    let mut fields = Vec::new();
    for field in found["__type"]["fields"].as_array().unwrap_or_else(|| panic!("no type {type_name}")) {
        // A page, a balance at a time, a card's spend: other routes, compared on their own.
        if !field["args"].as_array().unwrap().is_empty() || field["name"] == "spend" {
            continue;
        }
        let mut kind = &field["type"];
        while kind["name"].is_null() {
            kind = &kind["ofType"];
        }
        let name = field["name"].as_str().unwrap();
        if kind["kind"] == "OBJECT" {
            fields.push(format!("{name} {{ {} }}", Box::pin(selection(world, kind["name"].as_str().unwrap())).await));
        } else {
            fields.push(name.to_string());
        }
    }
    fields.join(" ")
}

/// GraphQL's answer holds REST's body: the same fields, null where REST leaves one out.
fn assert_same(what: &str, graphql: &Value, rest: &Value) {
    match (graphql, rest) {
        (Value::Object(g), Value::Object(r)) => {
            for (key, value) in r {
                assert!(g.contains_key(key), "{what}: GraphQL has no {key}");
                assert_same(&format!("{what}.{key}"), &g[key], value);
            }
            let extra: Map<String, Value> = g.iter().filter(|(k, _)| !r.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(extra.values().all(Value::is_null), "{what}: fields REST does not have: {extra:?}");
        }
        (Value::Array(g), Value::Array(r)) => {
            assert_eq!(g.len(), r.len(), "{what}");
            for (i, (g, r)) in g.iter().zip(r).enumerate() {
                assert_same(&format!("{what}[{i}]"), g, r);
            }
        }
        _ => assert_eq!(graphql, rest, "{what}"),
    }
}

fn id(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_string()
}

#[tokio::test]
async fn every_type_answers_what_its_rest_route_answers() {
    let world = World::new();
    let (alice, shop, insurer, pharmacy, clinic) =
        (caller("alice", &[]), caller("shop", &[]), caller("insurer-1", &["insurer"]), caller("pharmacy-1", &["pharmacy"]), caller("clinic", &[]));
    let payer = world.wallet(&alice, "personal", 1_000).await;
    let other = world.wallet(&alice, "personal", 0).await;
    let merchant = world.wallet(&shop, "merchant", 0).await;
    let sponsor = world.wallet(&insurer, "business", 10_000).await;
    let pharmacy_wallet = world.wallet(&pharmacy, "merchant", 0).await;
    let provider = world.wallet(&clinic, "business", 0).await;
    let (card, beneficiary) = world.card(&insurer, &sponsor, &alice, 80).await;

    // Commands through GraphQL, every field of their results selected.
    let wallet_result = selection(&world, "WalletCommandResult").await;
    let payment_result = selection(&world, "PaymentCommandResult").await;
    let insurance_result = selection(&world, "InsuranceClaimCommandResult").await;
    let debit = format!(
        "mutation($id: ID!) {{ debitWallet(walletId: $id, input: {{amount: 12.5, transactionType: \"payment\", reference: \"P\"}}) {{ {wallet_result} }} }}"
    );
    assert_eq!(graphql(&world, &alice, &debit, json!({"id": payer})).await["debitWallet"]["balance"], json!(987.5));
    let transfer = graphql(&world, &alice, "mutation($a: ID!, $b: ID!) { createTransfer(input: {sourceWalletId: $a, destinationWalletId: $b, amount: 10, reference: \"T\"}) { transferId status } }", json!({"a": payer, "b": other})).await;
    let transfer = id(&transfer["createTransfer"], "transferId");
    let authorize = format!("mutation($p: ID!, $m: ID!) {{ authorizePayment(input: {{payerWalletId: $p, merchantWalletId: $m, amount: 30, reference: \"O\"}}) {{ {payment_result} }} }}");
    let payment = id(&graphql(&world, &alice, &authorize, json!({"p": payer, "m": merchant})).await["authorizePayment"], "paymentId");
    let capture = format!("mutation($id: ID!) {{ capturePayment(paymentId: $id, amount: 20) {{ {payment_result} }} }}");
    assert_eq!(graphql(&world, &shop, &capture, json!({"id": payment})).await["capturePayment"]["releasedAmount"], json!(10));
    let submit = "mutation($c: ID!, $b: ID!, $r: ID!, $p: ID!) { submitPrescriptionClaim(input: {medcardId: $c, beneficiaryId: $b, prescriptionId: \"RX-1\",
        pharmacyWalletId: $r, patientWalletId: $p, items: [{drugCode: \"PAN\", drugName: \"Panadol\", quantity: 2, unitPrice: 15}]}) { claimId status } }";
    let claim = graphql(&world, &pharmacy, submit, json!({"c": card, "b": beneficiary, "r": pharmacy_wallet, "p": payer})).await;
    let claim = id(&claim["submitPrescriptionClaim"], "claimId");
    let file = format!("mutation($c: ID!, $w: ID!) {{ submitInsuranceClaim(input: {{medcardId: $c, providerWalletId: $w, amount: 100, description: \"visit\", documents: [\"d-1\"]}}) {{ {insurance_result} }} }}");
    let insurance = id(&graphql(&world, &clinic, &file, json!({"c": card, "w": provider})).await["submitInsuranceClaim"], "claimId");
    let approve = format!("mutation($id: ID!) {{ approveInsuranceClaim(claimId: $id, amount: 80) {{ {insurance_result} }} }}");
    assert_eq!(graphql(&world, &insurer, &approve, json!({"id": insurance})).await["approveInsuranceClaim"]["approvedAmount"], json!(80));
    let alert = world.fraud_alert(&payer).await;
    let resolve = format!(
        "mutation($id: ID!) {{ resolveFraudAlert(alertId: $id, input: {{resolution: \"false_positive\", note: \"checked\"}}) {{ {} }} }}",
        selection(&world, "FraudAlertCommandResult").await
    );
    let admin = caller("root", &["admin"]);
    assert_eq!(graphql(&world, &admin, &resolve, json!({"id": alert})).await["resolveFraudAlert"]["status"], json!("RESOLVED"));
    world.project().await;

    // Reads: GraphQL against REST, field by field.
    let reads = [
        ("wallet", "Wallet", Route::GetWallet, "walletId", payer.clone()),
        ("transfer", "Transfer", Route::GetTransfer, "transferId", transfer),
        ("payment", "Payment", Route::GetPayment, "paymentId", payment),
        ("medcard", "MedCard", Route::GetMedCard, "medcardId", card.clone()),
        ("claim", "Claim", Route::GetClaim, "claimId", claim),
        ("insuranceClaim", "InsuranceClaim", Route::GetInsuranceClaim, "claimId", insurance),
        ("fraudAlert", "FraudAlert", Route::GetFraudAlert, "alertId", alert),
    ];
    for (field, type_name, route, param, key) in reads {
        let rest = world.expect(200, route, &admin, &[(param, &key)], Value::Null).await;
        let query = format!("query($id: ID!) {{ {field}(id: $id) {{ {} }} }}", selection(&world, type_name).await);
        assert_same(field, &graphql(&world, &admin, &query, json!({"id": key})).await[field], &rest);
    }
    let pages = [
        ("medcardClaims(medcardId: $id)", Route::MedCardClaims, "medcardId", card.clone()),
        ("pharmacyClaims(pharmacyWalletId: $id)", Route::PharmacyClaims, "pharmacyWalletId", pharmacy_wallet),
    ];
    for (field, route, param, key) in pages {
        let rest = world.expect(200, route, &admin, &[(param, &key)], Value::Null).await;
        let query = format!("query($id: ID!) {{ page: {field} {{ {} }} }}", selection(&world, "ClaimPage").await);
        assert_same(field, &graphql(&world, &admin, &query, json!({"id": key})).await["page"], &rest);
    }
    let alerts = world.expect(200, Route::FraudAlerts, &admin, &[], Value::Null).await;
    let query = format!("{{ page: fraudAlerts(status: \"resolved\") {{ {} }} }}", selection(&world, "FraudAlertPage").await);
    assert_same("fraudAlerts", &graphql(&world, &admin, &query, json!({})).await["page"], &alerts);
    let spend = world.expect(200, Route::MedCardSpend, &alice, &[("medcardId", &card)], Value::Null).await;
    let query = format!("query($id: ID!) {{ medcard(id: $id) {{ spend {{ {} }} }} }}", selection(&world, "MedCardSpend").await);
    assert_same("spend", &graphql(&world, &alice, &query, json!({"id": card})).await["medcard"]["spend"], &spend);
    let history = world.expect(200, Route::ListTransactions, &alice, &[("walletId", &payer)], Value::Null).await;
    let query = format!("query($id: ID!) {{ wallet(id: $id) {{ transactions {{ nodes {{ {} }} }} }} }}", selection(&world, "Transaction").await);
    assert_same("transactions", &graphql(&world, &alice, &query, json!({"id": payer})).await["wallet"]["transactions"]["nodes"], &history["items"]);
    let mine = world.expect(200, Route::MyWallets, &alice, &[], Value::Null).await;
    let query = format!("{{ myWallets {{ {} }} }}", selection(&world, "Wallet").await);
    assert_same("myWallets", &graphql(&world, &alice, &query, json!({})).await["myWallets"], &mine["items"]);
    let at = world.expect(200, Route::GetBalance, &alice, &[("walletId", &payer)], Value::Null).await;
    let query = "query($id: ID!, $at: String!) { wallet(id: $id) { balanceAt(asOf: $at) { walletId balance version asOf } } }";
    assert_same("balanceAt", &graphql(&world, &alice, query, json!({"id": payer, "at": at["asOf"]})).await["wallet"]["balanceAt"], &at);
}
