"""End-to-end checks of the local-process Lambda executor (run by ../../selftest.sh).

Uses the shell/curl test function in ./function (no Rust needed), loaded with
LocalStack's hot-reload convention (S3Bucket "hot-reload", S3Key = folder).
Prints one line per check and a final "N passed, N failed" line; exit status 1
when a check failed.  Everything it creates has a per-run suffix and is deleted
at the end, so it can run against a LocalStack that is in use.
"""

import base64
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
REGION = "us-east-1"
HERE = Path(__file__).resolve().parent
FUNCTION_DIR = HERE / "function"
RUN = uuid.uuid4().hex[:8]
RECORD_DIR = Path(os.environ["SELFTEST_RECORD_DIR"]) / RUN
ROLE = "arn:aws:iam::000000000000:role/selftest-lambda-role"
HOT_RELOAD = {"S3Bucket": "hot-reload", "S3Key": str(FUNCTION_DIR)}

_cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=70)


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=_cfg,
    )


lam = client("lambda")
results: list[tuple[str, bool, float, str]] = []
cleanup: list = []


def check(label):
    """Decorator: run a check, record PASS/FAIL with its duration."""

    def wrap(fn):
        started = time.perf_counter()
        detail = ""
        try:
            detail = fn() or ""
            ok = True
        except Exception as e:  # a failed check must not stop the others
            ok = False
            detail = f"{type(e).__name__}: {e}"
            if os.environ.get("SELFTEST_VERBOSE"):
                traceback.print_exc()
        elapsed = time.perf_counter() - started
        results.append((label, ok, elapsed, detail))
        print(f"{'PASS' if ok else 'FAIL'} {label} ({elapsed:.2f}s){' - ' + detail if detail else ''}", flush=True)
        return fn

    return wrap


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_for(predicate, timeout, what, interval=0.25):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def create_function(name, timeout=3, **env):
    variables = {"RECORD_DIR": str(RECORD_DIR), **env}
    arn = lam.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Handler="bootstrap",
        Role=ROLE,
        Code=HOT_RELOAD,
        Timeout=timeout,
        MemorySize=128,
        Architectures=["x86_64"],
        Environment={"Variables": variables},
    )["FunctionArn"]
    cleanup.append(lambda: lam.delete_function(FunctionName=name))
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn


def invoke(name, payload, **kwargs):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


def recorded_events():
    return [p.read_text() for p in RECORD_DIR.glob("*.json")]


RECORD_DIR.mkdir(parents=True, exist_ok=True)
FN = f"selftest-echo-{RUN}"
FN_ARN = None


def streamed_table(name, view_type):
    """A table with a stream (deleted at the end); returns the client, name, stream ARN."""
    ddb = client("dynamodb")
    description = ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )["TableDescription"]
    cleanup.append(lambda: ddb.delete_table(TableName=name))
    ddb.get_waiter("table_exists").wait(TableName=name)
    return ddb, name, description["LatestStreamArn"]


def enabled_mapping(source_arn, **options):
    """An event source mapping from `source_arn` to the test function, once Enabled
    (deleted at the end, before its source)."""
    mapping = lam.create_event_source_mapping(
        EventSourceArn=source_arn, FunctionName=FN, StartingPosition="TRIM_HORIZON", BatchSize=10,
        MaximumBatchingWindowInSeconds=0, **options,
    )["UUID"]
    cleanup.insert(0, lambda: lam.delete_event_source_mapping(UUID=mapping))
    wait_for(lambda: lam.get_event_source_mapping(UUID=mapping)["State"] == "Enabled", 30, "mapping Enabled")
    return mapping


@check("(a) invoke returns the function's output")
def _():
    global FN_ARN
    FN_ARN = create_function(FN)
    response, body = invoke(FN, {"hello": "world"}, LogType="Tail")
    expect("FunctionError" not in response, f"unexpected FunctionError: {body}")
    expect(body["event"] == {"hello": "world"} and body["function"] == FN, f"got {body}")
    logs = base64.b64decode(response["LogResult"]).decode()
    expect(f"handling {body['requestId']}" in logs, f"LogResult lacks the function output: {logs!r}")
    started = time.perf_counter()
    for _ in range(10):
        invoke(FN, {"n": 1})
    return f"warm invoke {(time.perf_counter() - started) * 100:.0f} ms avg"


@check("(a2) function sees its Lambda environment and LocalStack endpoint")
def _():
    _, body = invoke(FN, {"action": "env"})
    expect(body["endpoint"] == ENDPOINT, f"AWS_ENDPOINT_URL={body['endpoint']}")
    expect(body["runtimeApi"].startswith("127.0.0.1:"), f"runtime API {body['runtimeApi']}")
    expect(body["handler"] == "bootstrap" and body["memory"] == "128", f"got {body}")
    expect(body["name"] == FN and body["region"] == REGION and body["hasKey"], f"got {body}")


@check("(b) a function error is reported as FunctionError")
def _():
    response, body = invoke(FN, {"action": "fail"})
    expect(response.get("FunctionError") == "Unhandled", f"FunctionError={response.get('FunctionError')}")
    expect(body == {"errorType": "Custom.Boom", "errorMessage": "failed on purpose"}, f"got {body}")


@check("(b2) timeout kills the process, reports Sandbox.Timedout, next invoke works")
def _():
    name = f"selftest-timeout-{RUN}"
    create_function(name, timeout=2)
    started = time.perf_counter()
    response, body = invoke(name, {"action": "sleep"})
    elapsed = time.perf_counter() - started
    expect(response.get("FunctionError") == "Unhandled", f"no FunctionError: {body}")
    expect(body["errorType"] == "Sandbox.Timedout", f"got {body}")
    expect("Task timed out after 2.00 seconds" in body["errorMessage"], f"got {body}")
    expect(elapsed < 4.5, f"timeout took {elapsed:.1f}s")
    response, body = invoke(name, {"after": "timeout"})
    expect("FunctionError" not in response and body["event"] == {"after": "timeout"}, f"got {body}")


@check("(b3) a crash during an invocation is Runtime.ExitError, next invoke works")
def _():
    response, body = invoke(FN, {"action": "crash"})
    expect(response.get("FunctionError") == "Unhandled", f"no FunctionError: {body}")
    expect(body["errorType"] == "Runtime.ExitError" and "exit status 3" in body["errorMessage"], f"got {body}")
    response, body = invoke(FN, {"after": "crash"})
    expect("FunctionError" not in response and body["event"] == {"after": "crash"}, f"got {body}")


@check("(b4) a bootstrap that exits at start is an init error")
def _():
    name = f"selftest-initexit-{RUN}"
    create_function(name, MODE="init-exit")
    response, body = invoke(name, {})
    expect(response.get("FunctionError") == "Unhandled", f"no FunctionError: {body}")
    expect(body["errorType"] == "Runtime.ExitError" and "exit status 1" in body["errorMessage"], f"got {body}")
    name = f"selftest-initerror-{RUN}"
    create_function(name, MODE="init-error")
    response, body = invoke(name, {})
    expect(response.get("FunctionError") == "Unhandled", f"no FunctionError: {body}")
    expect(body["errorType"] == "Custom.InitFailed", f"got {body}")


@check("(b5) function output reaches CloudWatch Logs and .state/lambda-logs")
def _():
    _, body = invoke(FN, {"log": "me"})
    logs = client("logs")
    needle = f"handling {body['requestId']}"

    def found():
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{FN}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return False
        return any(needle in e["message"] for e in events)

    wait_for(found, 15, "the log line in CloudWatch Logs")
    log_file = Path(os.environ["SELFTEST_STATE_DIR"]) / "lambda-logs" / f"{FN}.log"
    expect(needle in log_file.read_text(), f"{needle!r} not in {log_file}")


@check("(c) Step Functions: Task on the function ARN, Retry and Catch")
def _():
    sfn = client("stepfunctions")
    flaky_token = f"flaky-{RUN}"
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Task", "Resource": FN_ARN, "ResultPath": "$.echo", "Next": "Flaky"},
            "Flaky": {
                "Type": "Task",
                "Resource": FN_ARN,
                "Parameters": {"action": "flaky", "token": flaky_token},
                "Retry": [{"ErrorEquals": ["Custom.Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}],
                "ResultPath": "$.flaky",
                "Next": "AlwaysFails",
            },
            "AlwaysFails": {
                "Type": "Task",
                "Resource": FN_ARN,
                "Parameters": {"action": "fail"},
                "Catch": [{"ErrorEquals": ["Custom.Boom"], "ResultPath": "$.caught", "Next": "Caught"}],
                "Next": "NotReached",
            },
            "NotReached": {"Type": "Fail", "Error": "CatchDidNotRoute"},
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    machine = sfn.create_state_machine(
        name=f"selftest-sm-{RUN}", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    cleanup.append(lambda: sfn.delete_state_machine(stateMachineArn=machine))
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"order": 7}))["executionArn"]
    result = wait_for(
        lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
        60,
        "the execution to finish",
    )
    expect(result["status"] == "SUCCEEDED", f"status {result['status']}: {result.get('error')} {result.get('cause')}")
    output = json.loads(result["output"])
    expect(output["echo"]["event"] == {"order": 7}, f"Echo result {output.get('echo')}")
    expect(output["flaky"]["event"]["token"] == flaky_token, f"Flaky result {output.get('flaky')}")
    expect(output["caught"]["Error"] == "Custom.Boom", f"Catch result {output.get('caught')}")
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    failed = [e for e in history if e["type"] == "LambdaFunctionFailed"]
    expect(len(failed) == 2, f"expected 2 LambdaFunctionFailed events (flaky try + fail), got {len(failed)}")


@check("(d) DynamoDB stream -> event source mapping -> function")
def _():
    ddb, table, stream_arn = streamed_table(f"selftest-table-{RUN}", "NEW_AND_OLD_IMAGES")
    enabled_mapping(stream_arn)
    token = f"ddb-{uuid.uuid4().hex}"
    put_at = time.perf_counter()
    ddb.put_item(TableName=table, Item={"pk": {"S": token}})
    wait_for(lambda: any(token in e and "aws:dynamodb" in e for e in recorded_events()), 45, "the stream record")
    return f"delivered {time.perf_counter() - put_at:.1f}s after PutItem"


@check("(e) Kinesis stream -> event source mapping -> function")
def _():
    kinesis = client("kinesis")
    stream = f"selftest-stream-{RUN}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    cleanup.append(lambda: kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True))
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    enabled_mapping(arn)
    token = f"kin-{uuid.uuid4().hex}"
    encoded = base64.b64encode(json.dumps({"token": token}).encode()).decode()
    put_at = time.perf_counter()
    kinesis.put_record(StreamName=stream, Data=json.dumps({"token": token}).encode(), PartitionKey="p")
    wait_for(lambda: any(encoded in e and "aws:kinesis" in e for e in recorded_events()), 45, "the Kinesis record")
    return f"delivered {time.perf_counter() - put_at:.1f}s after PutRecord"


@check("(f) CloudFormation + SAM transform: AWS::Serverless::Function runs")
def _():
    cfn = client("cloudformation")
    stack = f"selftest-sam-{RUN}"
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "EchoFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Runtime": "provided.al2023",
                    "Architectures": ["x86_64"],
                    "Handler": "bootstrap",
                    "CodeUri": {"Bucket": "hot-reload", "Key": str(FUNCTION_DIR)},
                    "Timeout": 5,
                    "Environment": {"Variables": {"RECORD_DIR": str(RECORD_DIR)}},
                },
            }
        },
        "Outputs": {"FunctionName": {"Value": {"Ref": "EchoFunction"}}},
    }
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    cleanup.append(lambda: cfn.delete_stack(StackName=stack))
    cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    name = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "FunctionName")
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response, body = invoke(name, {"from": "sam"})
    expect("FunctionError" not in response and body["event"] == {"from": "sam"}, f"got {body}")
    return f"function {name}"


@check("(g) API Gateway REST (v1) Lambda proxy integration reaches the function")
def _():
    apig = client("apigateway")
    fn_name = f"selftest-http-{RUN}"
    arn = create_function(fn_name, MODE="http")
    api = apig.create_rest_api(name=f"selftest-api-{RUN}")["id"]
    cleanup.append(lambda: apig.delete_rest_api(restApiId=api))
    root = next(r["id"] for r in apig.get_resources(restApiId=api)["items"] if r["path"] == "/")
    proxy = apig.create_resource(restApiId=api, parentId=root, pathPart="{proxy+}")["id"]
    apig.put_method(restApiId=api, resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
    apig.put_integration(
        restApiId=api, resourceId=proxy, httpMethod="ANY", type="AWS_PROXY", integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations",
    )
    apig.create_deployment(restApiId=api, stageName="dev")
    for url, host in (
        (f"{ENDPOINT}/_aws/execute-api/{api}/dev/items/42", None),
        # older form, still served (LocalStack logs a deprecation warning)
        (f"{ENDPOINT}/restapis/{api}/dev/_user_request_/items/42", None),
        # the hostname form needs DNS for *.localhost.localstack.cloud, which
        # this offline setup has not; the Host header is enough
        (f"{ENDPOINT}/dev/items/42", f"{api}.execute-api.localhost.localstack.cloud:{ENDPOINT.rsplit(':', 1)[1]}"),
    ):
        request = urllib.request.Request(url, headers={"Host": host} if host else {})
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read().decode()
            expect(reply.status == 200, f"HTTP {reply.status} from {url}")
        expect(text.startswith(f"hello from {fn_name} path=/items/42"), f"{url} answered {text!r}")


@check("(h) the function calls LocalStack with its own credentials (DynamoDB PutItem)")
def _():
    ddb = client("dynamodb")
    table = f"selftest-fromfn-{RUN}"
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    cleanup.append(lambda: ddb.delete_table(TableName=table))
    name = f"selftest-ddbput-{RUN}"
    create_function(name, TABLE=table)
    token = uuid.uuid4().hex
    response, body = invoke(name, {"action": "ddb-put", "token": token})
    expect("FunctionError" not in response, f"function failed: {body}")
    item = ddb.get_item(TableName=table, Key={"pk": {"S": token}}).get("Item")
    expect(item and item["from"]["S"] == name, f"item {item}")


@check("(i) DynamoDB stream mapping with ReportBatchItemFailures redelivers the failed record")
def _():
    ddb, table, stream_arn = streamed_table(f"selftest-partial-{RUN}", "NEW_IMAGE")
    enabled_mapping(stream_arn, FunctionResponseTypes=["ReportBatchItemFailures"])
    token = f"partial-{uuid.uuid4().hex}"
    ddb.put_item(TableName=table, Item={"pk": {"S": token}})
    deliveries = wait_for(
        lambda: (n := sum(token in e for e in recorded_events())) >= 2 and n, 45, "a second delivery"
    )
    return f"{deliveries} deliveries (first one reported as a batch item failure)"


# --- cleanup and summary -----------------------------------------------------------------
# mappings were put first (a table or stream must outlive its mapping)
for action in cleanup:
    try:
        action()
    except Exception as e:  # best effort: a leftover must not fail the run
        print(f"cleanup: {type(e).__name__}: {e}", file=sys.stderr)

passed = sum(1 for _, ok, _, _ in results if ok)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
