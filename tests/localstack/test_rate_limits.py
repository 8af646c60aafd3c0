"""Per-caller rate limits on the deployed stack: the count is kept in DynamoDB, so it
holds across the route functions' containers. A burst from one token gets 429
RATE_LIMITED with Retry-After while another token is served; a refused command, retried
later with its Idempotency-Key, runs once; the route function's EMF log lines count
the refusals.

The deploy gives the test stack a command limit a burst can exceed (localstack/deploy.py),
and this test reads it from the stack's outputs. The burst is credits to a wallet that
does not exist: each is counted (the limit comes before anything else) and, admitted,
answered 404 at once, so that LocalStack serves them faster than the limit allows, which
credits racing on one real wallet would not."""

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


def header(headers, name):
    return {k.lower(): v for k, v in headers.items()}.get(name)


def test_a_burst_from_one_caller_is_refused_with_retry_after_while_another_is_served_and_a_retry_runs_once(api, stack):
    rate, burst = int(stack["CommandRateLimit"]), int(stack["CommandBurst"])
    window = math.ceil(burst / rate)
    noisy, quiet = api.token(f"noisy-{uuid.uuid4()}"), api.token(f"quiet-{uuid.uuid4()}")
    wallet = api.wallet(noisy)
    counted_before = rate_limited_in_emf_logs()
    nowhere = str(uuid.uuid4())
    credited, refused_total, lost = 0, 0, 0
    for _ in range(5):
        started = time.time()
        with ThreadPoolExecutor(max_workers=24) as pool:
            burst_replies = list(pool.map(lambda key: credit(api, noisy, nowhere, key), [f"burst-{uuid.uuid4()}" for _ in range(2 * burst)]))
            # Meanwhile, another caller is served as usual.
            other = api.wallet(quiet)
        elapsed = time.time() - started
        statuses = [status for status, _, _ in burst_replies]
        # 502: LocalStack's gateway now and then loses an invocation under this load
        # (the function's own answer never reaches it); never a 2xx or another 4xx.
        assert set(statuses) <= {404, 429, 502}, statuses
        assert statuses.count(502) <= len(statuses) // 10, statuses
        refused = [(reply, headers) for status, reply, headers in burst_replies if status == 429]
        refused_total += len(refused)
        lost += statuses.count(502)
        # At most `burst` per window, over the windows the burst spanned.
        assert statuses.count(404) <= burst * (math.ceil(elapsed / window) + 1), (statuses.count(404), elapsed)
        for reply, headers in refused:
            assert reply["statusCode"] == 429 and reply["error"] == "RATE_LIMITED", reply
            assert reply["message"] and reply["timestamp"] and reply["correlationId"], reply
            assert 1 <= int(header(headers, "retry-after")) <= window, headers
        if not refused:
            # The emulator was too slow to outrun the limit this time: go again.
            continue
        # A real credit right after the burst, while the budget is spent (unless a new
        # window began meanwhile: then it is admitted, and the burst goes again).
        key = f"real-{uuid.uuid4()}"
        status, reply, headers = credit(api, noisy, wallet, key)
        assert api.eventually(quiet, f"/api/v2/wallets/{other}", lambda w: w["status"] == "active")
        if status == 429:
            refused_total += 1
            break
        assert status == 200, reply
        credited += 1
    else:
        raise AssertionError("five bursts, and none left a credit refused after it")

    # Retried with its key once the wait is over, the refused credit runs; retried
    # again, it is the same answer replayed.
    time.sleep(int(header(headers, "retry-after")) + 0.2)
    status, first, first_headers = credit(api, noisy, wallet, key)
    assert status == 200, first
    assert header(first_headers, "idempotent-replayed") is None, "the 429 was not stored as the key's answer"
    status, again, again_headers = credit(api, noisy, wallet, key)
    assert (status, header(again_headers, "idempotent-replayed")) == (200, "true"), again
    assert again == first
    credited += 1

    # The refusals moved no money: one credit per admitted real credit.
    view = api.eventually(noisy, f"/api/v2/wallets/{wallet}", lambda w: w["version"] >= 2 + credited, within=60)
    assert (view["version"], view["balance"]) == (2 + credited, credited), view

    # The route function's EMF log lines (its stdout, kept per function by LocalStack's
    # executor plugin) counted the refusals.
    deadline = time.time() + 10
    while (counted := rate_limited_in_emf_logs() - counted_before) < refused_total and time.time() < deadline:
        time.sleep(0.5)
    # (A request whose answer LocalStack lost may have been refused too.)
    assert refused_total <= counted <= refused_total + lost, f"{counted} rate-limited requests in the new EMF lines, {refused_total} refused, {lost} lost"


def rate_limited_in_emf_logs():
    """The wallet-credit functions' `rate_limited_requests` EMF values, summed; each
    document checked for the format's shape. The plugin prefixes each line with its
    time and the invocation's id."""
    total = 0
    for path in (ROOT / "localstack" / ".state" / "lambda-logs").glob("*WalletCreditFunction*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '{"_aws"' not in line:
                continue
            document = json.loads(line[line.index('{"_aws"') :])
            directive = document["_aws"]["CloudWatchMetrics"][0]
            assert directive["Namespace"] == "HealthPay" and isinstance(document["_aws"]["Timestamp"], int), line
            for dimension in directive["Dimensions"][0]:
                assert isinstance(document[dimension], str), line
            if any(metric["Name"] == "rate_limited_requests" for metric in directive["Metrics"]):
                assert sorted(directive["Dimensions"][0]) == ["kind", "route"], line
                assert (document["route"], document["kind"]) == ("wallet.credit", "command"), line
                total += document["rate_limited_requests"]
    return total
