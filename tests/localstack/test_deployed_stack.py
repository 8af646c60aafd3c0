"""The contract, driven through the stack deployed to LocalStack: REST API →
Lambda → DynamoDB; DynamoDB Stream → publisher → Kinesis → projector and saga
starter; Step Functions → saga step Lambdas."""

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import conftest
from conftest import aws


def test_a_wallet_lives_through_the_deployed_functions(api, alice):
    wallet = api.wallet(alice)
    assert api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/credit", alice, {"amount": 1000, "transactionType": "deposit", "reference": "D1"})["balance"] == 1000
    assert api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, {"amount": 250.25, "transactionType": "payment", "reference": "P1"})["balance"] == 749.75
    view = api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == 4)
    assert (view["balance"], view["status"]) == (749.75, "active")
    history = api.expect(200, "GET", f"/api/v2/wallets/{wallet}/transactions?limit=10", alice)
    assert [i["transactionType"] for i in history["items"]] == ["payment", "deposit"]
    assert api.expect(200, "GET", f"/api/v2/wallets/{wallet}/balance", alice)["balance"] == 749.75
    mine = api.expect(200, "GET", "/api/v2/users/me/wallets", alice)
    assert [w["walletId"] for w in mine["items"]] == [wallet]


def test_tokens_and_ownership_are_enforced(api, alice):
    wallet = api.wallet(alice)
    status, reply, _ = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", None, {"amount": 1, "transactionType": "payment", "reference": "x"})
    assert (status, reply["error"]) == (401, "UNAUTHENTICATED")
    status, reply, _ = api.call("GET", f"/api/v2/wallets/{wallet}", "not-a-jwt")
    assert status == 401
    bob = api.token(f"bob-{uuid.uuid4()}")
    status, reply, _ = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", bob, {"amount": 1, "transactionType": "payment", "reference": "x"})
    assert (status, reply["error"]) == (403, "FORBIDDEN")
    status, reply, _ = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, {"amount": 0.001, "transactionType": "payment", "reference": "x"})
    assert (status, reply["error"]) == (400, "VALIDATION_ERROR")


def test_concurrent_debits_never_overdraw_across_lambda_containers(api, alice):
    wallet = api.wallet(alice, funds=300)
    body = {"amount": 30, "transactionType": "payment", "reference": "P"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, body), range(16)))
    statuses = sorted(status for status, _, _ in replies)
    assert statuses.count(200) == 10, statuses
    assert all(reply["error"] == "INSUFFICIENT_FUNDS" for status, reply, _ in replies if status != 200)
    assert set(statuses) <= {200, 422}, "no 409 and no 500"
    assert api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == 13)["balance"] == 0


def test_idempotency_keys_replay_across_functions(api, alice):
    wallet = api.wallet(alice, funds=100)
    body = {"amount": 40, "transactionType": "payment", "reference": "P"}
    first = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, body, {"Idempotency-Key": "k1"})
    again = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, body, {"Idempotency-Key": "k1"})
    assert (first[0], first[1]) == (again[0], again[1]) == (200, first[1])
    other = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, {**body, "amount": 41}, {"Idempotency-Key": "k1"})
    assert (other[0], other[1]["error"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] >= 4)["balance"] == 60


def transfer(api, token, source, destination, amount):
    reply = api.expect(202, "POST", "/api/v2/commands/transfers", token, {"sourceWalletId": source, "destinationWalletId": destination, "amount": amount, "reference": "T"})
    return reply["transferId"]


def execution(stack, transfer_id, within=30):
    return conftest.execution(stack["TransferStateMachineArn"], transfer_id, within)


def test_a_transfer_completes_through_step_functions(api, alice, stack):
    source, destination = api.wallet(alice, funds=500), api.wallet(alice)
    transfer_id = transfer(api, alice, source, destination, 120.5)
    done = api.eventually(alice, f"/api/v2/transfers/{transfer_id}", lambda t: t["status"] != "PENDING")
    assert done["status"] == "COMPLETED"
    run = execution(stack, transfer_id)
    assert run["status"] == "SUCCEEDED"
    assert json.loads(run["output"])["credit"]["status"] == "COMPLETED"
    assert api.eventually(alice, f"/api/v2/wallets/{source}", lambda w: w["balance"] == 379.5)
    assert api.eventually(alice, f"/api/v2/wallets/{destination}", lambda w: w["balance"] == 120.5)


def test_a_transfer_to_a_suspended_wallet_fails_and_is_compensated(api, alice, stack):
    admin = api.token("ops", "admin")
    source, destination = api.wallet(alice, funds=500), api.wallet(alice)
    api.expect(200, "POST", f"/api/v2/commands/wallets/{destination}/suspend", admin, {"reason": "kyc"})
    transfer_id = transfer(api, alice, source, destination, 100)
    done = api.eventually(alice, f"/api/v2/transfers/{transfer_id}", lambda t: t["status"] != "PENDING")
    assert (done["status"], done["failureReason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    output = json.loads(execution(stack, transfer_id)["output"])
    assert output["compensation"]["status"] == "FAILED"
    view = api.eventually(alice, f"/api/v2/wallets/{source}", lambda w: w["version"] == 5)
    assert view["balance"] == 500
    kinds = [i["transactionType"] for i in api.expect(200, "GET", f"/api/v2/wallets/{source}/transactions", alice)["items"]]
    assert kinds == ["refund", "transfer_out", "deposit"]


def bus_envelopes(stack):
    kinesis = aws("kinesis")
    stream = stack["EventBusStreamName"]
    envelopes = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                try:
                    envelopes.append((record["PartitionKey"], json.loads(record["Data"])))
                except ValueError:
                    pass  # the poison record of the DLQ test
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page["NextShardIterator"]
    return envelopes


def test_every_event_is_published_on_the_kinesis_bus_by_aggregate(api, alice, stack):
    wallet = api.wallet(alice, funds=10)
    deadline = time.time() + 30
    while True:
        mine = [(key, e) for key, e in bus_envelopes(stack) if e["aggregateId"] == wallet]
        if len(mine) >= 3 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert [e["eventType"] for _, e in mine] == ["WalletCreated", "WalletCredited", "WalletActivated"]
    assert all(key == wallet for key, _ in mine), "partitioned by aggregate id"
    assert [e["version"] for _, e in mine] == [1, 2, 3]
    assert all(e["metadata"]["userId"].startswith("alice-") and e["metadata"]["correlationId"] for _, e in mine)


def test_a_poisoned_record_lands_in_the_dlq_without_blocking_the_rest(api, alice, stack):
    kinesis, sqs = aws("kinesis"), aws("sqs")
    marker = f"poison-{uuid.uuid4()}"
    kinesis.put_record(StreamName=stack["EventBusStreamName"], PartitionKey=marker, Data=marker.encode())
    # The rest keeps flowing: a wallet created after the poison is projected.
    wallet = api.wallet(alice, funds=5)
    assert api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == 3)["balance"] == 5
    encoded = base64.b64encode(marker.encode()).decode()
    deadline = time.time() + 60
    parked = {}
    while time.time() < deadline and len(parked) < 3:
        for message in sqs.receive_message(QueueUrl=stack["DeadLetterQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            letter = json.loads(message["Body"])
            if letter.get("data") == encoded:
                parked[letter["consumer"]] = letter
    # Every consumer of the bus gave up on it, said why, and kept the record.
    assert set(parked) == {"read-model-projector", "saga-starter", "fraud-detector"}, parked
    assert all(letter["partitionKey"] == marker and "not an event envelope" in letter["reason"] for letter in parked.values())
