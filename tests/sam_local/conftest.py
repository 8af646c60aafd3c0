"""Fixtures for the tests that run the functions through the SAM CLI (`sam local invoke`,
`sam local start-api`) in containers, against the stack deployed to LocalStack.

Needs, in this order (./test.sh does all of it): LocalStack started, the stack deployed
(localstack/deploy.py, which also links every function's debug bootstrap into
localstack/.state/functions/), and `tools/sam-local/sam-local.sh up` (a Docker engine,
the stand-in base image, LocalStack reachable from the containers, and the generated
template.json / env-vars.json under localstack/.state/sam-local/).
"""

import copy
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "localstack" / ".state"
SAM_STATE = STATE / "sam-local"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
SAM = os.environ.get("SAM_CLI", str(ROOT / ".tools" / "venv" / "bin" / "sam"))
EVENTS = ROOT / "events"


def aws(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def fixture(name):
    return json.loads((EVENTS / name).read_text())


def replace_everywhere(value, old, new):
    """The fixture with every occurrence of the string `old` (ids, in keys, values and
    paths) replaced by `new`."""
    return json.loads(json.dumps(value).replace(old, new))


@pytest.fixture(scope="session")
def stack():
    path = STATE / "stack-outputs.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: deploy the stack first (localstack/deploy.py)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def sam_env():
    """The environment the SAM CLI runs in: the Docker engine sam-local.sh uses, and the
    test credentials (SAM hands the caller's credentials to the function)."""
    host = SAM_STATE / "docker-host"
    for name in ("template.json", "env-vars.json", "docker-host"):
        if not (SAM_STATE / name).exists():
            pytest.fail(f"{SAM_STATE / name} is missing: run tools/sam-local/sam-local.sh up after the deploy")
    return dict(
        os.environ,
        DOCKER_HOST=host.read_text().strip(),
        SAM_CLI_TELEMETRY="0",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )


def sam_args():
    return ["--template", str(SAM_STATE / "template.json"), "--env-vars", str(SAM_STATE / "env-vars.json"), "--skip-pull-image"]


class Invoker:
    """`sam local invoke FUNCTION --event FILE`: the function's answer (stdout) as JSON."""

    def __init__(self, env, tmp):
        self.env = env
        self.tmp = tmp

    def __call__(self, function, event):
        path = self.tmp / f"{function}-{uuid.uuid4()}.json"
        path.write_text(json.dumps(event))
        started = time.time()
        run = subprocess.run([SAM, "local", "invoke", function, "--event", str(path), *sam_args()], env=self.env, capture_output=True, text=True, timeout=180)
        print(f"sam local invoke {function}: {time.time() - started:.1f}s\n{run.stderr[-3000:]}")
        assert run.returncode == 0, f"sam local invoke {function} exited {run.returncode}:\n{run.stderr[-3000:]}"
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        assert lines, f"sam local invoke {function} printed no answer:\n{run.stderr[-3000:]}"
        return json.loads(lines[-1])


@pytest.fixture(scope="session")
def invoke(sam_env, tmp_path_factory):
    return Invoker(sam_env, tmp_path_factory.mktemp("events"))


def token(stack, sub, roles=""):
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "healthpay"
    env = dict(os.environ, HEALTHPAY_JWT_SECRET=stack["JwtSecret"])
    out = subprocess.run([str(binary), "token", "--sub", sub, "--roles", roles], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def event_types(stack, stream_id):
    """The event types of one stream, in version order, read from the events table."""
    items = aws("dynamodb").query(
        TableName=stack["EventsTableName"], KeyConditionExpression="streamId = :s", ExpressionAttributeValues={":s": {"S": stream_id}}, ConsistentRead=True
    )["Items"]
    return [item["eventType"]["S"] for item in sorted(items, key=lambda i: int(i["version"]["N"]))]


def read_item(stack, pk, sk):
    return aws("dynamodb").get_item(TableName=stack["ReadModelTableName"], Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")


def eventually(check, what, within=30):
    deadline = time.time() + within
    while True:
        result = check()
        if result:
            return result
        if time.time() > deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        time.sleep(0.5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_event(name, sub, **substitutions):
    """An API Gateway fixture from events/ as caller `sub` (the authorizer context the
    REST API would attach) with a fresh idempotency key, and ids substituted."""
    event = copy.deepcopy(fixture(name))
    for old, new in substitutions.items():
        event = replace_everywhere(event, old, new)
    event["requestContext"]["authorizer"].update({"principalId": sub, "sub": sub})
    key = f"sam-local-{uuid.uuid4()}"
    for headers in (event.get("headers") or {}, event.get("multiValueHeaders") or {}):
        if "Idempotency-Key" in headers:
            headers["Idempotency-Key"] = [key] if isinstance(headers["Idempotency-Key"], list) else key
    return event
