"""Fixtures for the tests against the stack deployed to LocalStack.

`localstack/deploy.py` writes the stack's outputs to localstack/.state/stack-outputs.json;
these tests read them, mint tokens with `healthpay token` (same secret as the
stack's JwtSecret) and speak HTTP to the deployed REST API, as a client would.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")


@pytest.fixture(scope="session")
def stack():
    path = ROOT / "localstack" / ".state" / "stack-outputs.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: deploy the stack first (./test.sh does: localstack/deploy.py)")
    return json.loads(path.read_text())


class Api:
    def __init__(self, stack):
        self.base = f"{ENDPOINT}/_aws/execute-api/{stack['ApiId']}/v1"
        self.secret = stack["JwtSecret"]
        self.binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "healthpay"

    def token(self, sub, roles=""):
        env = dict(os.environ, HEALTHPAY_JWT_SECRET=self.secret)
        out = subprocess.run([str(self.binary), "token", "--sub", sub, "--roles", roles], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def call(self, method, path, token=None, body=None, headers=None):
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def expect(self, status, method, path, token=None, body=None, headers=None):
        got, reply, _ = self.call(method, path, token, body, headers)
        assert got == status, f"{method} {path}: {got} {reply}"
        return reply

    def wallet(self, token, funds=None):
        body = {"walletType": "personal"}
        if funds is not None:
            body["initialBalance"] = funds
        wallet = self.expect(201, "POST", "/api/v2/commands/wallets/create", token, body)["walletId"]
        self.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/activate", token)
        return wallet

    def eventually(self, token, path, done, within=30):
        deadline = time.time() + within
        while True:
            status, reply, _ = self.call("GET", path, token)
            if status == 200 and done(reply):
                return reply
            if time.time() > deadline:
                raise AssertionError(f"{path} did not settle in {within}s: {status} {reply}")
            time.sleep(0.25)


@pytest.fixture(scope="session")
def api(stack):
    return Api(stack)


@pytest.fixture
def alice(api):
    # A fresh user per test, so tests do not see each other's wallets.
    return api.token(f"alice-{uuid.uuid4()}")


def aws(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def function_named(part):
    """The deployed function whose name contains `part` (ListFunctions answers 50 a page)."""
    pages = aws("lambda").get_paginator("list_functions").paginate()
    return next(f["FunctionName"] for page in pages for f in page["Functions"] if part in f["FunctionName"])


def execution(state_machine_arn, name, within=30):
    """The finished Step Functions execution `name` of a state machine."""
    sfn = aws("stepfunctions")
    arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    deadline = time.time() + within
    while True:
        try:
            found = sfn.describe_execution(executionArn=arn)
            if found["status"] != "RUNNING":
                return found
        except sfn.exceptions.ExecutionDoesNotExist:
            pass
        if time.time() > deadline:
            raise AssertionError(f"execution {arn} did not finish in {within}s")
        time.sleep(0.5)


def event_types(stack, stream_id):
    """The event types of one stream, in version order, read from the events table."""
    table = stack["EventsTableName"]
    items = aws("dynamodb").query(
        TableName=table, KeyConditionExpression="streamId = :s", ExpressionAttributeValues={":s": {"S": stream_id}}, ConsistentRead=True
    )["Items"]
    return [item["eventType"]["S"] for item in sorted(items, key=lambda i: int(i["version"]["N"]))]
