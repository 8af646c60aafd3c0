#!/usr/bin/env python3
"""Turn a SAM template built for `sam build` into one LocalStack can deploy as is.

    localize_template.py TEMPLATE [--lambda-dir DIR] [--arch x86_64|arm64] > out.json

* ``AWS::Serverless::Function`` resources built by cargo lambda
  (``Metadata.BuildProperties.Binary: NAME``) get
  ``CodeUri: {Bucket: hot-reload, Key: <DIR>/NAME}``: LocalStack then runs
  ``<DIR>/NAME/bootstrap`` (``cargo lambda build`` output) straight from disk,
  and picks up rebuilds without a redeploy.  DIR defaults to
  ``<template folder>/target/lambda``.
* ``Architectures`` (function and Globals) become ``--arch`` (default: this
  machine's), since the binaries are built for and run on the host.
* ``AWS::Serverless::StateMachine`` ``DefinitionUri`` pointing at a local file
  is inlined as ``Definition`` (SAM would upload it to S3).
* ``AWS::CloudWatch::Alarm`` resources are left out: LocalStack runs here without
  CloudWatch (``start.sh``'s service list), so they could not be created.  The
  functions that feed them publish in the embedded metric format (a log line),
  which needs no CloudWatch API.

Output is JSON (CloudFormation accepts it) on stdout.  Needs PyYAML (present in
LocalStack's venv and image).
"""

import argparse
import json
import platform
import sys
from pathlib import Path

import yaml


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation's short intrinsic tags."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute (the attribute may itself contain dots)
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def host_arch() -> str:
    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def localize(template: dict, base: Path, lambda_dir: Path, arch: str) -> dict:
    globals_function = template.get("Globals", {}).get("Function")
    if isinstance(globals_function, dict) and "Architectures" in globals_function:
        globals_function["Architectures"] = [arch]
    localized = {}
    resources = template.get("Resources", {})
    for name in [n for n, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Alarm"]:
        del resources[name]
        localized["AWS::CloudWatch::Alarm (left out)"] = localized.get("AWS::CloudWatch::Alarm (left out)", 0) + 1
    for resource in resources.values():
        kind = resource.get("Type")
        props = resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::Function":
            binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            if binary:
                props["CodeUri"] = {"Bucket": "hot-reload", "Key": str(lambda_dir / binary)}
            if "Architectures" in props or globals_function is None:
                props["Architectures"] = [arch]
        elif kind == "AWS::Serverless::StateMachine":
            uri = props.get("DefinitionUri")
            if isinstance(uri, str) and not uri.startswith("s3://"):
                text = (base / uri).read_text()
                props["Definition"] = json.loads(text) if uri.endswith(".json") else yaml.load(text, _CfnLoader)
                del props["DefinitionUri"]
        else:
            continue
        localized[kind] = localized.get(kind, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in localized.items())
    print(f"localize_template: rewrote {summary} for LocalStack", file=sys.stderr)
    return template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("--lambda-dir", type=Path, help="cargo lambda output (default: <template dir>/target/lambda)")
    parser.add_argument("--arch", default=host_arch(), choices=["x86_64", "arm64"])
    args = parser.parse_args()
    base = args.template.resolve().parent
    lambda_dir = (args.lambda_dir or base / "target" / "lambda").resolve()
    template = yaml.load(args.template.read_text(), _CfnLoader)
    json.dump(localize(template, base, lambda_dir, args.arch), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
