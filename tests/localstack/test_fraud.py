"""Fraud detection on the deployed stack: a wallet's events reach the fraud-detector
function through the Kinesis bus, which raises alerts on their own streams and
suspends the wallet in the same commit; the admin routes read and resolve them; the
same events delivered to the function again raise nothing more."""

import base64
import json
import time
import uuid
from decimal import Decimal

from boto3.dynamodb.types import TypeDeserializer

from conftest import aws, function_named


def detector():
    return function_named("FraudDetector")


def thresholds():
    """The deployed rules (test.sh deploys the test stack with its own thresholds)."""
    env = aws("lambda").get_function_configuration(FunctionName=detector())["Environment"]["Variables"]
    return Decimal(env["FRAUD_HIGH_VALUE"]), Decimal(env["FRAUD_NEW_WALLET_OUTFLOW"])


def plain(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def envelopes(stack, stream_id):
    """A stream's events as the bus carries them (the envelope's JSON)."""
    items = aws("dynamodb").query(
        TableName=stack["EventsTableName"], KeyConditionExpression="streamId = :s", ExpressionAttributeValues={":s": {"S": stream_id}}, ConsistentRead=True
    )["Items"]
    decode = TypeDeserializer().deserialize
    return [plain({k: decode(v) for k, v in item.items()}) for item in sorted(items, key=lambda i: int(i["version"]["N"]))]


def test_money_leaving_a_new_wallet_raises_alerts_through_the_bus_and_suspends_it(api, stack, alice):
    admin = api.token("ops", "admin")
    high_value, young_limit = thresholds()
    amount = max(high_value, young_limit + Decimal("0.01"))
    wallet = api.wallet(alice, funds=float(amount) + 10)
    debit = {"amount": float(amount), "transactionType": "withdrawal", "reference": "ATM"}
    api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, debit)

    page = api.eventually(admin, f"/api/v2/fraud/alerts?walletId={wallet}", lambda p: len(p["items"]) == 2, within=120)
    alerts = {a["rule"]: a for a in page["items"]}
    assert set(alerts) == {"high_value", "new_wallet_outflow"}, page
    assert alerts["new_wallet_outflow"]["suspendedWallet"] is True and alerts["high_value"]["suspendedWallet"] is False
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["status"] == "suspended", within=60)
    status, reply, _ = api.call("POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, {"amount": 1, "transactionType": "withdrawal", "reference": "ATM-2"})
    assert (status, reply["error"]) == (422, "WALLET_NOT_ACTIVE"), reply
    suspension = [e for e in envelopes(stack, f"wallet#{wallet}") if e["eventType"] == "WalletSuspended"]
    assert [(e["data"]["reason"], e["metadata"]["userId"]) for e in suspension] == [("fraud: new_wallet_outflow", "fraud-detector")]

    # The owner may not read or resolve alerts.
    assert api.call("GET", "/api/v2/fraud/alerts", alice)[0] == 403
    young = alerts["new_wallet_outflow"]["alertId"]
    assert api.call("POST", f"/api/v2/commands/fraud/alerts/{young}/resolve", alice, {"resolution": "false_positive"})[0] == 403

    # The same events delivered to the detector again: nothing more.
    records = [
        {"kinesis": {"data": base64.b64encode(json.dumps(e).encode()).decode(), "partitionKey": f"wallet#{wallet}",
                     "sequenceNumber": str(i), "kinesisSchemaVersion": "1.0", "approximateArrivalTimestamp": 1795255200.5 + i},
         "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{i}", "eventName": "aws:kinesis:record",
         "eventVersion": "1.0", "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/replay"}
        for i, e in enumerate(envelopes(stack, f"wallet#{wallet}"))
    ]
    answer = aws("lambda").invoke(FunctionName=detector(), Payload=json.dumps({"Records": records}).encode())
    assert json.loads(answer["Payload"].read()) == {"batchItemFailures": []}
    time.sleep(2)
    assert len(api.expect(200, "GET", f"/api/v2/fraud/alerts?walletId={wallet}", admin)["items"]) == 2
    for alert in alerts.values():
        assert [e["eventType"] for e in envelopes(stack, f"fraud-alert#{alert['alertId']}")] == ["FraudAlertRaised"]

    # An admin resolves one and lifts the suspension.
    resolved = api.expect(200, "POST", f"/api/v2/commands/fraud/alerts/{young}/resolve", admin, {"resolution": "false_positive", "note": "payroll"})
    assert resolved == {"alertId": young, "status": "RESOLVED", "resolution": "false_positive"}
    api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/activate", admin)
    api.eventually(admin, f"/api/v2/fraud/alerts/{young}", lambda a: a["status"] == "RESOLVED", within=60)
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["status"] == "active", within=60)


def test_everyday_traffic_raises_nothing(api, alice):
    admin = api.token("ops", "admin")
    wallet = api.wallet(alice, funds=500)
    for i in range(3):
        api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/debit", alice, {"amount": 20, "transactionType": "withdrawal", "reference": f"W-{i}"})
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["balance"] == 440, within=60)
    # The detector runs beside the projector on the same bus; give it a batch window more.
    time.sleep(3)
    assert api.expect(200, "GET", f"/api/v2/fraud/alerts?walletId={wallet}", admin)["items"] == []
    assert api.expect(200, "GET", f"/api/v2/wallets/{wallet}", alice)["status"] == "active"
