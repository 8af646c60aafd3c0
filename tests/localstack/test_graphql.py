"""POST /graphql through the deployed API Gateway and its `graphql` Lambda function:
a query and a mutation with a token, answered as the REST routes answer them, and
a stranger refused (FORBIDDEN in extensions.code) without any change."""

import uuid


def graphql(api, token, query, variables=None, headers=None):
    status, reply, response_headers = api.call("POST", "/graphql", token, {"query": query, "variables": variables or {}}, headers)
    assert status == 200, f"/graphql: {status} {reply}"
    return reply, response_headers


CREDIT = """mutation($id: ID!, $amount: Money!) {
  creditWallet(walletId: $id, input: {amount: $amount, transactionType: "deposit", reference: "GQL-1"}) { commandId balance version }
}"""
WALLET = "query($id: ID!) { wallet(id: $id) { walletId ownerId balance version transactions(first: 5) { edges { node { amount type } } } } }"


def test_a_mutation_and_a_query_through_api_gateway(api, alice):
    wallet = api.wallet(alice)
    reply, _ = graphql(api, alice, CREDIT, {"id": wallet, "amount": 125.5}, {"Idempotency-Key": f"gql-{uuid.uuid4()}"})
    assert "errors" not in reply, reply
    assert reply["data"]["creditWallet"]["balance"] == 125.5
    assert reply["data"]["creditWallet"]["version"] == 3

    # The read model follows the events (the projector function, through Kinesis).
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] >= 3)
    reply, _ = graphql(api, alice, WALLET, {"id": wallet})
    assert "errors" not in reply, reply
    view = reply["data"]["wallet"]
    assert (view["walletId"], view["balance"], view["version"]) == (wallet, 125.5, 3)
    assert [e["node"] for e in view["transactions"]["edges"]] == [{"amount": 125.5, "type": "credit"}]
    mine, _ = graphql(api, alice, "{ myWallets { walletId } }")
    assert mine["data"]["myWallets"] == [{"walletId": wallet}]


def test_a_stranger_is_refused_and_nothing_changes(api, alice):
    wallet = api.wallet(alice, 100)
    before = api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] >= 3)
    mallory = api.token(f"mallory-{uuid.uuid4()}")
    debit = 'mutation($id: ID!) { debitWallet(walletId: $id, input: {amount: 100, transactionType: "payment", reference: "STEAL"}) { balance } }'
    for query in (debit, WALLET):
        reply, _ = graphql(api, mallory, query, {"id": wallet})
        assert reply["data"] is None, reply
        assert [e["extensions"]["code"] for e in reply["errors"]] == ["FORBIDDEN"], reply
    assert api.expect(200, "GET", f"/api/v2/wallets/{wallet}", alice) == before

    # Without a token, API Gateway's authorizer (or its stand-in) refuses the request itself.
    status, reply, _ = api.call("POST", "/graphql", None, {"query": "{ myWallets { walletId } }"})
    assert status == 401, reply
