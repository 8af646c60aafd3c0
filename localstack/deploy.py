#!/usr/bin/env python3
"""Deploy template.yaml to the LocalStack started by start.sh.

    localstack/.state/venv/bin/python localstack/deploy.py [--release] [--stack healthpay]
        [--parameter Name=Value ...]

1. Builds every Lambda function of the `functions` crate for this host
   (debug by default: the build `cargo test --workspace` makes, so after the test
   step nothing is compiled again; `--release` builds them with `cargo build
   --release`) and links each binary in as `<state>/functions/<name>/bootstrap`.
2. Rewrites the template for LocalStack with support/localize_template.py (each
   function's code becomes LocalStack's hot-reload folder, which the project's
   Lambda executor runs as a host process; `Architectures` becomes this host's;
   the state machine's definition is inlined), and gives the functions the JWT
   secret (see `localstack_template`).
3. Uploads the template to an S3 bucket (CloudFormation takes at most 51,200
   bytes inline), creates the CloudFormation stack from it with the SAM transform
   (an existing one is deleted first: LocalStack's in-place updates of this stack
   are unreliable), waits for it, and writes its outputs to
   `<state>/stack-outputs.json`.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
import localize_template  # noqa: E402  (the same rewriting the Docker deploy hook uses)

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "localstack" / ".state"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
TEMPLATE_BUCKET = "healthpay-deploy-templates"


def log(message):
    print(f"deploy: {message}", flush=True)


def build(release):
    profile = "release" if release else "debug"
    if release:
        command = ["cargo", "build", "--release", "--workspace", "--bins"]
    else:
        # The very build `cargo test --workspace` makes: it links every function binary
        # (the functions crate has integration tests), with dev-dependency features
        # unified. A plain `cargo build --bins` resolves features without them and
        # compiles the whole dependency tree a second time, doubling the disk a CI
        # run needs; after ./test.sh's test step this is a no-op.
        command = ["cargo", "test", "--workspace", "--locked", "--no-run"]
    log(" ".join(command))
    subprocess.run(command, cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / profile
    binaries = re.findall(r'^        Binary: (\S+)$', (ROOT / "template.yaml").read_text(), re.M)
    for binary in binaries:
        folder = STATE / "functions" / binary
        folder.mkdir(parents=True, exist_ok=True)
        # A hard link, not a copy: 50 copies of a debug binary cost CI gigabytes of disk.
        # It is safe under a running function: linkers write a new file (and Linux
        # refuses to open a running executable for writing), so a later build leaves
        # this inode as it is until the next deploy replaces the link.
        tmp = folder / "bootstrap.new"
        tmp.unlink(missing_ok=True)
        try:
            os.link(target / binary, tmp)
        except OSError:  # another file system
            shutil.copy2(target / binary, tmp)
        tmp.replace(folder / "bootstrap")
    log(f"{len(binaries)} functions built ({profile})")
    return STATE / "functions"


def localstack_template(lambda_dir):
    """template.yaml as LocalStack deploys it (support/localize_template.py), plus
    the JWT secret on every function: LocalStack's free edition does not run Lambda
    authorizers, so the route functions verify bearer tokens themselves when given
    it (functions/src/aws.rs)."""
    template = yaml.load((ROOT / "template.yaml").read_text(), localize_template._CfnLoader)
    template = localize_template.localize(template, ROOT, lambda_dir, localize_template.host_arch())
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    variables["JWT_SECRET"] = {"Ref": "JwtSecret"}
    return json.dumps(template, indent=1)


def jwt_secret():
    secret = os.environ.get("HEALTHPAY_JWT_SECRET")
    if secret:
        return secret
    path = STATE / "jwt-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def wait_until_deleted(cfn, stack, within=300):
    """Polls until the stack is gone. (boto3's waiter gives up on the first
    DELETE_FAILED, which LocalStack reports on the way for stacks whose last update
    failed, before the stack does go.)"""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        except cfn.exceptions.ClientError as e:
            if "does not exist" in str(e):
                return
            raise
        if status == "DELETE_COMPLETE":
            return
        time.sleep(1)
    sys.exit(f"deploy: stack {stack} was not deleted within {within}s")


def deploy(stack, template, secret, overrides):
    config = Config(retries={"max_attempts": 10, "mode": "standard"})
    cfn = boto3.client("cloudformation", endpoint_url=ENDPOINT, config=config)
    parameters = [{"ParameterKey": "JwtSecret", "ParameterValue": secret}]
    # Per-caller command limits a test can drive a burst over through LocalStack (the
    # template's defaults, 2,000 in two seconds, are beyond what it serves), high enough
    # that no other test's caller meets them: 40 commands per 20-second window. The
    # window is long so that even a slow machine, where LocalStack serves a few
    # requests a second, exceeds it and a request right after the burst still finds it
    # spent (4-second windows did not, on a loaded CI machine).
    # tests/localstack/test_rate_limits.py reads them back from the stack's outputs.
    # A --parameter of the same name wins.
    chosen = dict([("CommandRateLimit", "2"), ("CommandBurst", "40")] + list(overrides))
    parameters += [{"ParameterKey": key, "ParameterValue": value} for key, value in chosen.items()]
    capabilities = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    # CloudFormation takes at most 51,200 bytes inline; like `sam deploy`, hand it
    # the template through S3 instead.
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=config)
    if not any(b["Name"] == TEMPLATE_BUCKET for b in s3.list_buckets().get("Buckets", [])):
        s3.create_bucket(Bucket=TEMPLATE_BUCKET)
    s3.put_object(Bucket=TEMPLATE_BUCKET, Key=f"{stack}.json", Body=template.encode())
    source = {"TemplateURL": f"{ENDPOINT}/{TEMPLATE_BUCKET}/{stack}.json"}
    if any(s["StackName"] == stack and s["StackStatus"] != "DELETE_COMPLETE" for s in cfn.list_stacks()["StackSummaries"]):
        # LocalStack's in-place update of this stack is unreliable (the API
        # deployment is replaced, the update rolls back, and the stack can end
        # "UPDATE_COMPLETE" without outputs), so an existing stack is replaced.
        log(f"deleting the existing stack {stack} (it is replaced, not updated)")
        cfn.delete_stack(StackName=stack)
        wait_until_deleted(cfn, stack)
    started = time.time()
    log(f"creating stack {stack}")
    cfn.create_stack(StackName=stack, **source, Parameters=parameters, Capabilities=capabilities)
    while True:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not status["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.time() - started > 600:
            sys.exit(f"deploy: stack {stack} still {status['StackStatus']} after 10 minutes")
        time.sleep(1)
    if status["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events if e["ResourceStatus"].endswith("FAILED")]
        sys.exit(f"deploy: stack {stack} is {status['StackStatus']}:\n  " + "\n  ".join(failed[:20]))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in status.get("Outputs", [])}
    if "ApiId" not in outputs:
        sys.exit(f"deploy: stack {stack} is {status['StackStatus']} but has no outputs: {sorted(outputs)}")
    log(f"stack {stack} {status['StackStatus']} in {time.time() - started:.1f}s")
    return outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="healthpay")
    parser.add_argument("--release", action="store_true", help="build the functions with the release profile")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a template parameter other than its default (repeatable), e.g. FraudVelocityCount=20")
    args = parser.parse_args()
    overrides = []
    for pair in args.parameter:
        key, _, value = pair.partition("=")
        if not key or not value:
            parser.error(f"--parameter takes NAME=VALUE, got {pair!r}")
        overrides.append((key, value))
    STATE.mkdir(parents=True, exist_ok=True)
    template = localstack_template(build(args.release))
    (STATE / "template.localstack.json").write_text(template)
    secret = jwt_secret()
    outputs = deploy(args.stack, template, secret, overrides)
    outputs["StackName"] = args.stack
    outputs["JwtSecret"] = secret
    (STATE / "stack-outputs.json").write_text(json.dumps(outputs, indent=2))
    for key, value in sorted(outputs.items()):
        if key != "JwtSecret":
            log(f"{key} = {value}")


if __name__ == "__main__":
    main()
