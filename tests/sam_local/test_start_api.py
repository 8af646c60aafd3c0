"""`sam local start-api`: the REST API served by the SAM CLI, each route's function in a
container, the template's Lambda (TOKEN) authorizer run before every route but /health
(LocalStack's free edition never runs it; SAM does), on top of the stack deployed to
LocalStack. The README's flow: two wallets, activate, credit, debit, a transfer that
the deployed saga completes, and the read side.
"""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import SAM, aws, event_types, eventually, free_port, sam_args, token


class LocalApi:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, bearer=None, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if bearer:
            request.add_header("Authorization", f"Bearer {bearer}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"null")
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def expect(self, status, method, path, bearer=None, body=None, headers=None):
        got, reply = self.call(method, path, bearer, body, headers)
        assert got == status, f"{method} {path}: {got} {reply}"
        return reply


@pytest.fixture(scope="module")
def local_api(sam_env, tmp_path_factory):
    """`sam local start-api` on a free loopback port, warm containers (one per function,
    started at its first request), stopped (SIGTERM: SAM removes its containers) after
    the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("start-api") / "sam.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [SAM, "local", "start-api", *sam_args(), "--host", "127.0.0.1", "--port", str(port), "--warm-containers", "LAZY"],
            env=sam_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = LocalApi(f"http://127.0.0.1:{port}")
    try:
        deadline = time.time() + 120
        while True:
            assert process.poll() is None, f"sam local start-api exited {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(api.base + "/health", timeout=60) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.time() < deadline, f"sam local start-api did not serve /health within 120 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield api
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"sam local start-api log (tail):\n{log.read_text()[-4000:]}")


def test_the_authorizer_runs_before_the_routes(local_api, stack):
    """No bearer token: API Gateway's (here SAM's) 401 before any function runs. A token
    signed with another secret: the authorizer refuses it. The SAM CLI (1.170) answers
    502 where API Gateway answers 401 for an authorizer that fails with "Unauthorized";
    either way no route function runs. A valid token: the route sees its caller."""
    status, reply = local_api.call("POST", "/api/v2/commands/wallets/create", body={"walletType": "personal"})
    assert (status, reply) == (401, {"message": "Unauthorized"})
    forged = token({"JwtSecret": "another-secret-of-32-characters!"}, "mallory")
    status, reply = local_api.call("POST", "/api/v2/commands/wallets/create", forged, {"walletType": "personal"})
    assert status in (401, 502) and "walletId" not in str(reply), (status, reply)
    caller = f"sam-{uuid.uuid4()}"
    wallet = local_api.expect(201, "POST", "/api/v2/commands/wallets/create", token(stack, caller), {"walletType": "personal"})["walletId"]
    created = aws("dynamodb").get_item(TableName=stack["EventsTableName"], Key={"streamId": {"S": f"wallet#{wallet}"}, "version": {"N": "1"}}, ConsistentRead=True)["Item"]
    assert created["eventType"]["S"] == "WalletCreated"
    assert created["data"]["M"]["ownerId"]["S"] == caller, created


def test_the_readme_flow(local_api, stack):
    """The README's curl flow, through SAM's API: two wallets, activated; 1000 in, 250.25
    out; a 100 transfer that LocalStack's Step Functions saga completes; the balances."""
    alice = token(stack, f"sam-{uuid.uuid4()}")
    admin = token(stack, "sam-ops", "admin")
    api = local_api
    a = api.expect(201, "POST", "/api/v2/commands/wallets/create", alice, {"walletType": "personal", "currency": "EGP", "kycLevel": "basic"})["walletId"]
    b = api.expect(201, "POST", "/api/v2/commands/wallets/create", alice, {"walletType": "personal"})["walletId"]
    api.expect(200, "POST", f"/api/v2/commands/wallets/{a}/activate", alice)
    api.expect(200, "POST", f"/api/v2/commands/wallets/{b}/activate", alice)
    key = f"dep-{uuid.uuid4()}"
    credit = {"amount": 1000, "transactionType": "deposit", "reference": "DEP-1"}
    api.expect(200, "POST", f"/api/v2/commands/wallets/{a}/credit", alice, credit, {"Idempotency-Key": key})
    api.expect(200, "POST", f"/api/v2/commands/wallets/{a}/credit", alice, credit, {"Idempotency-Key": key})  # a retry: no second credit
    api.expect(200, "POST", f"/api/v2/commands/wallets/{a}/debit", alice, {"amount": 250.25, "transactionType": "payment", "reference": "PAY-1"})
    transfer = api.expect(202, "POST", "/api/v2/commands/transfers", alice, {"sourceWalletId": a, "destinationWalletId": b, "amount": 100, "reference": "TXF-1"})["transferId"]

    def settled(path, done):
        def check():
            status, reply = api.call("GET", path, alice)
            return reply if status == 200 and done(reply) else None

        return eventually(check, f"GET {path}", within=60)

    assert settled(f"/api/v2/transfers/{transfer}", lambda t: t["status"] != "PENDING" and t["status"] != "INITIATED")["status"] == "COMPLETED"
    assert float(settled(f"/api/v2/wallets/{a}", lambda w: float(w["balance"]) == 649.75)["balance"]) == 649.75
    assert float(settled(f"/api/v2/wallets/{b}", lambda w: float(w["balance"]) == 100)["balance"]) == 100
    assert event_types(stack, f"wallet#{a}") == ["WalletCreated", "WalletActivated", "WalletCredited", "WalletDebited", "WalletDebited"]
    # the caller's roles reach the route through the authorizer's context
    status, _ = api.call("POST", f"/api/v2/commands/wallets/{b}/suspend", alice, {"reason": "kyc review"})
    assert status == 403
    api.expect(200, "POST", f"/api/v2/commands/wallets/{b}/suspend", admin, {"reason": "kyc review"})
