"""`sam local invoke` on the events/ fixtures: one function of each kind, run by the SAM
CLI in a container (the Lambda runtime interface emulator over the prebuilt bootstrap),
talking to the stack deployed on LocalStack. Each fixture gets fresh ids, so every
effect checked in DynamoDB or Kinesis can only come from this invocation.
"""

import base64
import json
import time
import uuid

import pytest
from conftest import api_event, aws, event_types, eventually, fixture, read_item, replace_everywhere, token

FIXTURE_WALLET = "0195f3a0-0000-7000-8000-000000000001"
FIXTURE_OTHER_WALLET = "0195f3a0-0000-7000-8000-000000000002"
FIXTURE_ACTIVATED_WALLET = "0195f3a0-0000-7000-8000-000000000003"
FIXTURE_TRANSFER = "0195f3a0-0000-7000-8000-0000000000a1"


def body(response):
    return json.loads(response["body"]) if response.get("body") else None


def test_a_route_command_appends_its_events(invoke, stack):
    """WalletCreateFunction on api-wallet-create.json (a wallet with an initial balance
    of 50): 201, and the wallet's stream in the events table."""
    owner = f"sam-{uuid.uuid4()}"
    response = invoke("WalletCreateFunction", api_event("api-wallet-create.json", owner))
    assert response["statusCode"] == 201, response
    wallet = body(response)["walletId"]
    assert event_types(stack, f"wallet#{wallet}") == ["WalletCreated", "WalletCredited"]


def test_a_query_reads_the_projected_view(invoke, stack):
    """WalletGetFunction on api-wallet-get.json, for a wallet created through SAM whose
    view LocalStack's deployed pipeline (stream -> publisher -> Kinesis -> projector)
    has written: 200 with the view; another caller gets no answer about it."""
    owner = f"sam-{uuid.uuid4()}"
    created = invoke("WalletCreateFunction", api_event("api-wallet-create.json", owner))
    wallet = body(created)["walletId"]
    eventually(lambda: read_item(stack, f"WALLET#{wallet}", "VIEW"), f"the view of wallet {wallet}")
    response = invoke("WalletGetFunction", api_event("api-wallet-get.json", owner, **{FIXTURE_WALLET: wallet}))
    assert response["statusCode"] == 200, response
    view = body(response)
    assert (view["walletId"], view["ownerId"], view["status"], float(view["balance"])) == (wallet, owner, "pending", 50.0), view
    stranger = invoke("WalletGetFunction", api_event("api-wallet-get.json", f"sam-{uuid.uuid4()}", **{FIXTURE_WALLET: wallet}))
    assert stranger["statusCode"] in (403, 404), stranger


def test_the_stream_publisher_puts_the_batch_on_the_bus(invoke, stack):
    """EventPublisherFunction on dynamodb-stream-batch.json: no failed item, and the
    three events on the Kinesis bus, keyed by their aggregate id, in order."""
    wallet = str(uuid.uuid4())
    kinesis = aws("kinesis")
    stream = stack["EventBusStreamName"]
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    iterators = [kinesis.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="LATEST")["ShardIterator"] for s in shards]
    response = invoke("EventPublisherFunction", replace_everywhere(fixture("dynamodb-stream-batch.json"), FIXTURE_WALLET, wallet))
    assert response == {"batchItemFailures": []}, response

    def published():
        found = []
        for i, iterator in enumerate(iterators):
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            iterators[i] = page["NextShardIterator"]
            found += [json.loads(r["Data"]) for r in page["Records"] if r["PartitionKey"] == wallet]
        return found

    records = []
    deadline = time.time() + 20
    while len(records) < 3 and time.time() < deadline:
        records += published()
        time.sleep(0.3)
    assert [(r["aggregateId"], r["eventType"]) for r in records] == [
        (wallet, "WalletCreated"),
        (wallet, "WalletActivated"),
        (wallet, "WalletCredited"),
    ], records


def test_the_kinesis_projector_writes_the_read_models(invoke, stack):
    """ReadModelProjectorFunction on kinesis-batch.json (created, activated, credited):
    no failed item, and the wallet's view in the read-model table."""
    wallet = str(uuid.uuid4())
    event = fixture("kinesis-batch.json")
    for record in event["Records"]:
        data = base64.b64decode(record["kinesis"]["data"]).decode().replace(FIXTURE_WALLET, wallet)
        record["kinesis"]["data"] = base64.b64encode(data.encode()).decode()
        record["kinesis"]["partitionKey"] = wallet
    assert read_item(stack, f"WALLET#{wallet}", "VIEW") is None
    response = invoke("ReadModelProjectorFunction", event)
    assert response == {"batchItemFailures": []}, response
    view = read_item(stack, f"WALLET#{wallet}", "VIEW")
    assert view is not None, "the projector wrote no view"
    fields = {name: next(iter(value.values())) for name, value in view.items()}
    assert (fields["walletId"], fields["ownerId"], fields["status"], fields["balance"]) == (wallet, "alice", "active", "100000"), view


@pytest.fixture
def saga_starter_paused(stack):
    """The deployed saga starter's Kinesis mapping, disabled while a test drives a
    transfer's saga steps itself (so that LocalStack's Step Functions does not race it);
    calling the fixture's value (or the test's end) enables it again."""
    client = aws("lambda")
    # ListFunctions answers 50 a page; the stack has more functions than that.
    pages = client.get_paginator("list_functions").paginate()
    name = next(f["FunctionName"] for page in pages for f in page["Functions"] if "SagaStarterFunction" in f["FunctionName"])
    mappings = client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert mappings, "the saga starter has no event source mapping"

    def set_enabled(enabled):
        for mapping in mappings:
            client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
        state = "Enabled" if enabled else "Disabled"
        for mapping in mappings:
            eventually(lambda m=mapping: client.get_event_source_mapping(UUID=m["UUID"])["State"] == state, f"the mapping {state.lower()}")

    set_enabled(False)
    yield lambda: set_enabled(True)
    set_enabled(True)


def test_a_saga_step_moves_the_money_once(invoke, stack, saga_starter_paused):
    """TransferDebitSourceFunction on step-input.json, for a transfer initiated through
    SAM (TransferCreateFunction, the fixture's 100 from a wallet holding 500) while
    LocalStack's saga starter is paused: the source is debited by this invocation, and a
    second run of the step (a Step Functions retry) is accepted without a second debit.
    Resumed, the deployed saga finishes the transfer from there: one debit, one credit."""
    owner = f"sam-{uuid.uuid4()}"
    funded = api_event("api-wallet-create.json", owner)
    funded["body"] = json.dumps({**json.loads(funded["body"]), "initialBalance": 500})
    source = body(invoke("WalletCreateFunction", funded))["walletId"]
    destination = body(invoke("WalletCreateFunction", api_event("api-wallet-create.json", owner)))["walletId"]
    for wallet in (source, destination):
        activated = invoke("WalletActivateFunction", api_event("api-wallet-activate.json", owner, **{FIXTURE_ACTIVATED_WALLET: wallet}))
        assert activated["statusCode"] == 200, activated
    create = api_event("api-transfer-create.json", owner, **{FIXTURE_WALLET: source, FIXTURE_OTHER_WALLET: destination})
    created = invoke("TransferCreateFunction", create)
    assert created["statusCode"] == 202, created
    transfer = body(created)["transferId"]
    # the deployed pipeline would have started the saga by now (it takes 1-2 s)
    time.sleep(3)
    sfn = aws("stepfunctions")
    execution = stack["TransferStateMachineArn"].replace(":stateMachine:", ":execution:") + f":{transfer}"
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn=execution)
    assert event_types(stack, f"wallet#{source}") == ["WalletCreated", "WalletCredited", "WalletActivated"]

    step = replace_everywhere(fixture("step-input.json"), FIXTURE_TRANSFER, transfer)
    first = invoke("TransferDebitSourceFunction", step)
    assert first["accepted"] is True, first
    assert event_types(stack, f"wallet#{source}") == ["WalletCreated", "WalletCredited", "WalletActivated", "WalletDebited"]
    again = invoke("TransferDebitSourceFunction", step)
    assert again["accepted"] is True, again
    assert event_types(stack, f"wallet#{source}").count("WalletDebited") == 1

    saga_starter_paused()  # resume
    def done():
        try:
            found = sfn.describe_execution(executionArn=execution)
        except sfn.exceptions.ExecutionDoesNotExist:
            return None
        return found if found["status"] != "RUNNING" else None

    finished = eventually(done, "the saga, resumed", within=60)
    assert finished["status"] == "SUCCEEDED", finished
    assert event_types(stack, f"wallet#{source}").count("WalletDebited") == 1
    assert event_types(stack, f"wallet#{destination}").count("WalletCredited") == 2  # its initial 50, then the transfer


def test_the_authorizer_allows_a_valid_token_and_refuses_the_fixtures(invoke, stack):
    """AuthorizerFunction on authorizer-token.json: the fixture's token (signed with
    another secret) is refused with "Unauthorized" (API Gateway's 401); a token signed
    with the stack's secret is allowed for the whole stage, with its claims as context."""
    refused = invoke("AuthorizerFunction", fixture("authorizer-token.json"))
    assert refused.get("errorMessage") == "Unauthorized", refused
    event = fixture("authorizer-token.json")
    event["authorizationToken"] = "Bearer " + token(stack, "sam-carol", "admin")
    allowed = invoke("AuthorizerFunction", event)
    assert allowed["principalId"] == "sam-carol", allowed
    statement = allowed["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow" and statement["Resource"] == ["arn:aws:execute-api:us-east-1:000000000000:abc123/v1/*"], allowed
    assert allowed["context"]["sub"] == "sam-carol" and json.loads(allowed["context"]["roles"]) == ["admin"], allowed
