"""Per-caller rate limits on the deployed stack: the count is kept in DynamoDB, so it
holds across the route functions' containers. A burst from one token gets 429
RATE_LIMITED with Retry-After while another token is served; a refused command, retried
later with its Idempotency-Key, runs once; the route function's EMF log lines count
the refusals.

The deploy gives the test stack a limit a burst can exceed (localstack/deploy.py), and
this test reads it from the stack's outputs."""

import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def credit(api, token, wallet, key):
    body = {"amount": 1, "transactionType": "deposit", "reference": key}
    return api.call("POST", f"/api/v2/commands/wallets/{wallet}/credit", token, body, {"Idempotency-Key": key})


def test_a_burst_from_one_caller_is_refused_with_retry_after_while_another_is_served(api, stack):
    rate, burst = int(stack["CommandRateLimit"]), int(stack["CommandBurst"])
    window = math.ceil(burst / rate)
    noisy, quiet = api.token(f"noisy-{uuid.uuid4()}"), api.token(f"quiet-{uuid.uuid4()}")
    wallet = api.wallet(noisy)
    keys = [f"burst-{uuid.uuid4()}" for _ in range(3 * burst)]
    counted_before = rate_limited_in_emf_logs()
    started = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda key: (key, credit(api, noisy, wallet, key)), keys))
        # Meanwhile, another caller is served as usual.
        other = api.wallet(quiet)
    elapsed = time.time() - started
    admitted = [key for key, (status, _, _) in replies if status == 200]
    refused = [(key, reply, headers) for key, (status, reply, headers) in replies if status != 200]
    assert refused, f"{len(keys)} commands in {elapsed:.1f}s, none refused"
    # At most `burst` per window, over the windows the burst spanned (and the wallet's two).
    assert len(admitted) + 2 <= burst * (math.ceil(elapsed / window) + 1), (len(admitted), elapsed)
    for key, reply, headers in refused:
        assert reply["statusCode"] == 429 and reply["error"] == "RATE_LIMITED", reply
        assert reply["message"] and reply["timestamp"] and reply["correlationId"], reply
        retry_after = {k.lower(): v for k, v in headers.items()}["retry-after"]
        assert 1 <= int(retry_after) <= window, retry_after
    assert api.eventually(quiet, f"/api/v2/wallets/{other}", lambda w: w["status"] == "active")

    # A refused credit, retried with its key once the window is over, runs once.
    key, _, headers = refused[0]
    time.sleep(int({k.lower(): v for k, v in headers.items()}["retry-after"]) + 0.2)
    status, first, first_headers = credit(api, noisy, wallet, key)
    assert status == 200, first
    assert "idempotent-replayed" not in {k.lower() for k in first_headers}, "the 429 was not stored as the key's answer"
    status, again, again_headers = credit(api, noisy, wallet, key)
    assert (status, {k.lower(): v for k, v in again_headers.items()}.get("idempotent-replayed")) == (200, "true"), again
    assert again == first

    # The refusals moved no money: one credit per admitted request, plus the retried one.
    credited = len(admitted) + 1
    view = api.eventually(noisy, f"/api/v2/wallets/{wallet}", lambda w: w["version"] >= 2 + credited, within=60)
    assert (view["version"], view["balance"]) == (2 + credited, credited), view

    # The route function's EMF log lines (its stdout, kept per function by LocalStack's
    # executor plugin) counted the refusals.
    deadline = time.time() + 10
    while (counted := rate_limited_in_emf_logs() - counted_before) < len(refused) and time.time() < deadline:
        time.sleep(0.5)
    assert counted == len(refused), f"{counted} rate-limited requests in the new EMF lines, {len(refused)} refused"


def rate_limited_in_emf_logs():
    """The wallet-credit functions' `rate_limited_requests` EMF values, summed; each
    document checked for the format's shape."""
    total = 0
    for path in (ROOT / "localstack" / ".state" / "lambda-logs").glob("*WalletCreditFunction*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if not (line.startswith("{") and '"_aws"' in line):
                continue
            document = json.loads(line)
            directive = document["_aws"]["CloudWatchMetrics"][0]
            assert directive["Namespace"] == "HealthPay" and isinstance(document["_aws"]["Timestamp"], int), line
            for dimension in directive["Dimensions"][0]:
                assert isinstance(document[dimension], str), line
            if any(metric["Name"] == "rate_limited_requests" for metric in directive["Metrics"]):
                assert sorted(directive["Dimensions"][0]) == ["kind", "route"], line
                assert (document["route"], document["kind"]) == ("wallet.credit", "command"), line
                total += document["rate_limited_requests"]
    return total
