"""A burst like a busy hour's, against the stack deployed to LocalStack: more
concurrent clients than function containers, transfers, credits, debits (some sent
twice with one Idempotency-Key) and prescription claims. Every transfer and claim
view must reach its terminal state, money must add up, and nothing may be parked
in the dead-letter queue. Projection lag (command answered -> view shows it) is
measured and printed (`pytest -s` shows it; BENCHMARKS.md quotes it)."""

import json
import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import aws, function_named
from test_cards_claims_payments import ITEMS, Scene

CLIENTS = 12
TRANSFERS = 150
MOVEMENTS = 120
CLAIMS = 12


def total(api, admin, wallets):
    # The temporal balance reads the event store: the truth, not a view.
    return sum(api.expect(200, "GET", f"/api/v2/wallets/{w}/balance", admin)["balance"] for w in wallets)


def test_a_burst_of_transfers_movements_and_claims_settles_every_view_and_parks_nothing(api, stack):
    rng = random.Random(7)
    tag = uuid.uuid4()
    admin = api.token("ops", "admin")
    users = [api.token(f"burst-{tag}-{i}") for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        wallets = list(pool.map(lambda token: api.wallet(token, funds=1000), users))
    scene = Scene(api, patient_funds=5000, coverage=50, limit=100000)
    everyone = wallets + [scene.patient_wallet, scene.sponsor_wallet, scene.pharmacy_wallet]
    before = total(api, admin, everyone)

    def transfer(i):
        source = rng.randrange(CLIENTS)
        destination = (source + 1 + rng.randrange(CLIENTS - 1)) % CLIENTS
        body = {"sourceWalletId": wallets[source], "destinationWalletId": wallets[destination], "amount": 1 + i % 5, "reference": f"B-{i}"}
        return api.expect(202, "POST", "/api/v2/commands/transfers", users[source], body)["transferId"]

    def movement(i):
        who = i % CLIENTS
        kind = "credit" if i % 2 == 0 else "debit"
        body = {"amount": 2, "transactionType": "deposit" if kind == "credit" else "withdrawal", "reference": f"M-{i}"}
        key = {"Idempotency-Key": f"burst-{tag}-{i}"}
        path = f"/api/v2/commands/wallets/{wallets[who]}/{kind}"
        first = api.call("POST", path, users[who], body, key)
        if i % 10 == 0:  # a client that retried: the same answer, applied once
            again = api.call("POST", path, users[who], body, key)
            assert (again[0], again[1]) == (first[0], first[1]), (first, again)
        assert first[0] in (200, 422), first
        return (2 if kind == "credit" else -2) if first[0] == 200 else 0

    def claim(i):
        return scene.submit(f"RX-{tag}-{i}")

    started = time.time()
    with ThreadPoolExecutor(CLIENTS) as pool:
        transfers = pool.map(transfer, range(TRANSFERS))
        moved = pool.map(movement, range(MOVEMENTS))
        claims = pool.map(claim, range(CLAIMS))
        transfers, moved, claims = list(transfers), list(moved), list(claims)
    commands = TRANSFERS + MOVEMENTS + MOVEMENTS // 10 + CLAIMS
    print(f"\nburst: {commands} commands from {CLIENTS} clients in {time.time() - started:.1f} s")

    settled = time.time()
    for transfer_id in transfers:
        view = api.eventually(admin, f"/api/v2/transfers/{transfer_id}", lambda t: t["status"] in ("COMPLETED", "FAILED"), within=240)
        assert view["status"] == "COMPLETED" or view.get("failureReason") == "INSUFFICIENT_FUNDS", view
    for claim_id in claims:
        scene.settled(claim_id)
    print(f"burst: every transfer and claim view terminal {time.time() - settled:.1f} s after the last answer")

    # Money adds up: transfers and claims move money between these wallets; only
    # credits and debits bring it in or take it out.
    assert total(api, admin, everyone) == before + sum(moved)
    # Every wallet view caught up with its events.
    for wallet, token in zip(wallets, users):
        truth = api.expect(200, "GET", f"/api/v2/wallets/{wallet}/balance", admin)
        api.eventually(token, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == truth["version"], within=120)

    # Projection lag, one command at a time: answered -> its view shows it.
    lags = []
    for i in range(20):
        reply = api.expect(200, "POST", f"/api/v2/commands/wallets/{wallets[0]}/credit", users[0],
                           {"amount": 1, "transactionType": "deposit", "reference": f"LAG-{i}"})
        answered = time.time()
        api.eventually(users[0], f"/api/v2/wallets/{wallets[0]}", lambda w: w["version"] >= reply["version"], within=60)
        lags.append(time.time() - answered)
    lags.sort()
    print(f"burst: projection lag p50 {statistics.median(lags) * 1000:.0f} ms, p95 {lags[int(len(lags) * 0.95) - 1] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")

    # Nothing of the burst was parked: the queue holds at most the poison records
    # other tests put on the bus on purpose.
    sqs = aws("sqs")
    for _ in range(3):
        for message in sqs.receive_message(QueueUrl=stack["DeadLetterQueueUrl"], MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", []):
            letter = json.loads(message["Body"])
            assert "not an event envelope" in letter.get("reason", ""), f"parked during the burst: {message['Body'][:500]}"


def projector_name(stack):
    return function_named("ReadModelProjector")


def test_a_projector_that_fails_for_a_while_loses_nothing_once_it_recovers(api, stack):
    """The projector's read table is made unreachable (a wrong table name: every
    write fails, as under throttling), commands go on being answered, and once the
    table is back every view catches up; nothing is parked."""
    lam = aws("lambda")
    name = projector_name(stack)
    config = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    alice = api.token(f"flaky-{uuid.uuid4()}")
    wallet = api.wallet(alice, funds=100)
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == 3)
    broken = dict(config, READ_TABLE="no-such-table")
    try:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": broken})
        aws_wait_updated(lam, name)
        versions = [api.expect(200, "POST", f"/api/v2/commands/wallets/{wallet}/credit", alice,
                               {"amount": 1, "transactionType": "deposit", "reference": f"F-{i}"})["version"] for i in range(10)]
        time.sleep(5)
        stuck = api.expect(200, "GET", f"/api/v2/wallets/{wallet}", alice)
        assert stuck["version"] < versions[-1], "the projector could not write while its table was gone"
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": config})
        aws_wait_updated(lam, name)
    healed = api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == versions[-1], within=180)
    assert healed["balance"] == 110
    history = api.expect(200, "GET", f"/api/v2/wallets/{wallet}/transactions?limit=50", alice)["items"]
    assert sorted(i["reference"] for i in history if i["reference"].startswith("F-")) == sorted(f"F-{i}" for i in range(10))


def aws_wait_updated(lam, name, within=60):
    deadline = time.time() + within
    while lam.get_function_configuration(FunctionName=name).get("LastUpdateStatus", "Successful") not in ("Successful", "Failed"):
        if time.time() > deadline:
            raise AssertionError(f"{name} was not updated in {within}s")
        time.sleep(0.5)


def test_healthpay_redrive_projects_what_was_parked_and_deletes_it(api, stack):
    """A wallet's view and history are lost (as if its batch had been dropped) and its
    last event is parked: `healthpay redrive` rebuilds them from the events table
    and deletes the message; undecodable letters stay, said to be so."""
    import base64
    import os
    import subprocess

    from test_deployed_stack import bus_envelopes

    alice = api.token(f"redrive-{uuid.uuid4()}")
    wallet = api.wallet(alice, funds=7)
    api.eventually(alice, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == 3)
    dynamodb = aws("dynamodb")
    table = stack["ReadModelTableName"]
    items = dynamodb.query(TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"WALLET#{wallet}"}})["Items"]
    for item in items:
        dynamodb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    assert api.call("GET", f"/api/v2/wallets/{wallet}", alice)[0] == 404
    last = [e for key, e in bus_envelopes(stack) if key == wallet][-1]
    letter = {"consumer": "read-model-projector", "reason": "test: a dropped batch", "sequenceNumber": "0", "partitionKey": wallet,
              "data": base64.b64encode(json.dumps(last).encode()).decode()}
    aws("sqs").send_message(QueueUrl=stack["DeadLetterQueueUrl"], MessageBody=json.dumps(letter))

    env = dict(os.environ, DEAD_LETTER_QUEUE_URL=stack["DeadLetterQueueUrl"], EVENTS_TABLE=stack["EventsTableName"],
               READ_TABLE=table, IDEMPOTENCY_TABLE=stack["IdempotencyTableName"], EVENT_BUS_STREAM=stack["EventBusStreamName"],
               TRANSFER_STATE_MACHINE_ARN=stack["TransferStateMachineArn"], CLAIM_STATE_MACHINE_ARN=stack["ClaimStateMachineArn"])
    done = subprocess.run([str(api.binary), "redrive"], env=env, capture_output=True, text=True, timeout=120)
    print(done.stdout)
    assert "messages done" in done.stdout, done.stdout + done.stderr
    kept = [line for line in done.stdout.splitlines() if line.startswith("  kept ")]
    assert all("still cannot be read" in line for line in kept), done.stdout
    assert done.returncode == (1 if kept else 0), done.stderr
    view = api.expect(200, "GET", f"/api/v2/wallets/{wallet}", alice)
    assert (view["version"], view["balance"]) == (3, 7)
    assert len(api.expect(200, "GET", f"/api/v2/wallets/{wallet}/transactions", alice)["items"]) == 1
    remaining = aws("sqs").receive_message(QueueUrl=stack["DeadLetterQueueUrl"], MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", [])
    assert not any(json.loads(m["Body"]).get("reason") == "test: a dropped batch" for m in remaining)


def test_killing_function_processes_mid_burst_leaves_the_books_verified_clean(api, stack):
    """Function processes (commands, saga steps, the projector, the publisher) are
    SIGKILLed at random while transfers and claims run; clients retry with their
    Idempotency-Key as real ones do. Once the retries and sagas are done,
    `healthpay verify --backend dynamodb` finds the books and every view exact."""
    import os
    import signal
    import subprocess
    import threading

    rng = random.Random(11)
    tag = uuid.uuid4()
    users = [api.token(f"kill-{tag}-{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        wallets = list(pool.map(lambda token: api.wallet(token, funds=500), users))
    scene = Scene(api, patient_funds=5000, coverage=50, limit=100000)
    stop = threading.Event()
    killed = []

    def killer():
        functions = os.path.join("localstack", ".state", "functions") + os.sep
        while not stop.wait(0.4):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        command = cmdline.read().decode(errors="replace")
                except OSError:
                    continue
                if functions in command and "authorizer" not in command and rng.random() < 0.3:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(command.split(functions)[1].split(os.sep)[0])
                    except OSError:
                        pass

    def retried(method, path, token, body, key):
        for attempt in range(8):
            status, reply, _ = api.call(method, path, token, body, {"Idempotency-Key": key})
            if status < 500:
                return status, reply
            time.sleep(0.5 * (attempt + 1))
        raise AssertionError(f"{path} kept failing: {status} {reply}")

    def transfer(i):
        source = i % len(users)
        body = {"sourceWalletId": wallets[source], "destinationWalletId": wallets[(source + 1 + i % 7) % len(users)], "amount": 1 + i % 3, "reference": f"K-{i}"}
        status, reply = retried("POST", "/api/v2/commands/transfers", users[source], body, f"kill-{tag}-t{i}")
        assert status == 202, reply
        return reply["transferId"]

    def claim(i):
        body = {"medcardId": scene.medcard, "beneficiaryId": scene.beneficiary, "prescriptionId": f"RX-K-{tag}-{i}",
                "pharmacyWalletId": scene.pharmacy_wallet, "patientWalletId": scene.patient_wallet, "items": ITEMS}
        status, reply = retried("POST", "/api/v2/commands/claims/prescriptions", scene.pharmacy, body, f"kill-{tag}-c{i}")
        assert status == 202, reply
        return reply["claimId"]

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            transfers = list(pool.map(transfer, range(60)))
            claims = list(pool.map(claim, range(4)))
    finally:
        stop.set()
        thread.join()
    print(f"\nkilled {len(killed)} function processes mid-burst: {sorted(set(killed))}")
    assert killed, "the burst ran while function processes were being killed"

    admin = api.token("ops", "admin")
    for transfer_id in transfers:
        api.eventually(admin, f"/api/v2/transfers/{transfer_id}", lambda t: t["status"] in ("COMPLETED", "FAILED"), within=300)
    for claim_id in claims:
        scene.settled(claim_id)
    for wallet, token in zip(wallets, users):
        truth = api.expect(200, "GET", f"/api/v2/wallets/{wallet}/balance", admin)
        api.eventually(token, f"/api/v2/wallets/{wallet}", lambda w: w["version"] == truth["version"], within=180)
    verify = subprocess.run([str(api.binary), "verify", "--backend", "dynamodb", "--events-table", stack["EventsTableName"], "--read-table", stack["ReadModelTableName"]],
                            env=dict(os.environ, HEALTHPAY_DYNAMODB_ENDPOINT=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")),
                            capture_output=True, text=True, timeout=600)
    print(verify.stdout[-2000:])
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
