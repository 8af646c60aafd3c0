#!/usr/bin/env python3
"""Write the two files `sam local invoke` / `sam local start-api` take on this machine.

    generate.py --endpoint http://172.29.0.1:4566 --out localstack/.state/sam-local
                [--template template.yaml] [--code-dir localstack/.state/functions]

* OUT/template.json: the template with
  - every cargo-lambda function's ``CodeUri`` pointing at ``<code-dir>/<Binary>`` (a
    folder holding a prebuilt ``bootstrap``: deploy.py links the cargo build there,
    ``cargo lambda build`` writes ``target/lambda/<bin>/``) and its build ``Metadata``
    dropped. A function whose ``CodeUri`` already holds a ``bootstrap`` (``sam build``
    output: ``--template .aws-sam/build/template.yaml``) keeps it;
  - the ``Architecture`` parameter defaulting to this host's (the bootstraps were
    built for it);
  - ``AWS_ENDPOINT_URL`` declared in the functions' global environment (SAM passes a
    function only the variables its template declares), set to ``--endpoint``;
  - relative ``DefinitionUri``s made absolute (the file lives elsewhere).
* OUT/env-vars.json (``--env-vars``): the deployed stack's names, from
  localstack/.state/stack-outputs.json, for the variables the template fills with
  ``!Ref``s that only CloudFormation resolves, plus the JWT secret (authorizer) and
  the endpoint.
"""

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "localstack" / "support"))
import localize_template  # noqa: E402  (its YAML loader reads CloudFormation's short tags)
import yaml  # noqa: E402


def host_arch():
    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def local_template(template_path, code_dir, endpoint):
    template = yaml.load(template_path.read_text(), localize_template._CfnLoader)
    base = template_path.parent
    missing = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            code = props.get("CodeUri")
            if isinstance(code, str) and (base / code / "bootstrap").exists():
                # built already (`sam build` output): run that
                props["CodeUri"] = str((base / code).resolve())
                resource.pop("Metadata", None)
            elif binary:
                folder = code_dir / binary
                if not (folder / "bootstrap").exists():
                    missing.append(str(folder / "bootstrap"))
                props["CodeUri"] = str(folder)
                resource.pop("Metadata")
            elif isinstance(code, str):
                props["CodeUri"] = str((base / code).resolve())
        elif resource["Type"] == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["DefinitionUri"] = str((base / props["DefinitionUri"]).resolve())
    if missing:
        print(f"generate: {len(missing)} functions have no bootstrap yet, e.g. {missing[0]}", file=sys.stderr)
    if "Architecture" in template.get("Parameters", {}):
        template["Parameters"]["Architecture"]["Default"] = host_arch()
    variables = template["Globals"]["Function"].setdefault("Environment", {}).setdefault("Variables", {})
    variables["AWS_ENDPOINT_URL"] = endpoint
    return template


def env_vars(outputs, endpoint):
    return {
        "Parameters": {
            "AWS_ENDPOINT_URL": endpoint,
            "EVENTS_TABLE": outputs["EventsTableName"],
            "IDEMPOTENCY_TABLE": outputs["IdempotencyTableName"],
            "READ_TABLE": outputs["ReadModelTableName"],
            "EVENT_BUS_STREAM": outputs["EventBusStreamName"],
            "TRANSFER_STATE_MACHINE_ARN": outputs["TransferStateMachineArn"],
            "CLAIM_STATE_MACHINE_ARN": outputs["ClaimStateMachineArn"],
            "DEAD_LETTER_QUEUE_URL": outputs["DeadLetterQueueUrl"],
            "STACK_NAME": outputs.get("StackName", "healthpay"),
            "JWT_SECRET": outputs["JwtSecret"],
        }
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="LocalStack as the containers reach it")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--code-dir", type=Path, default=ROOT / "localstack" / ".state" / "functions")
    parser.add_argument("--outputs", type=Path, default=ROOT / "localstack" / ".state" / "stack-outputs.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    template = local_template(args.template.resolve(), args.code_dir.resolve(), args.endpoint)
    (args.out / "template.json").write_text(json.dumps(template, indent=1))
    outputs = json.loads(args.outputs.read_text())
    (args.out / "env-vars.json").write_text(json.dumps(env_vars(outputs, args.endpoint), indent=2))
    print(f"generate: wrote {args.out / 'template.json'} and {args.out / 'env-vars.json'} (endpoint {args.endpoint})", file=sys.stderr)


if __name__ == "__main__":
    main()
