"""`sam build` as a user of the template runs it (the `rust-cargolambda` build method,
cargo-lambda from tools/requirements.txt, `Architecture=x86_64`), then
`sam local invoke` on what it built. One function, in debug mode (SAM_BUILD_MODE=debug):
cargo-lambda builds for an explicit target triple, so nothing of the test build is
reused, and the debug profile is the cheaper one (about 4 minutes on 2 cores here).
HEALTHPAY_SAM_BUILD=0 skips it.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, SAM, SAM_STATE, api_event, event_types

pytestmark = pytest.mark.skipif(os.environ.get("HEALTHPAY_SAM_BUILD") == "0", reason="HEALTHPAY_SAM_BUILD=0")


def test_sam_build_then_invoke_what_it_built(sam_env, stack, tmp_path):
    build = SAM_STATE / "build"
    env = dict(sam_env, SAM_BUILD_MODE="debug", PATH=f"{Path(SAM).parent}{os.pathsep}{sam_env['PATH']}")
    started = time.time()
    run = subprocess.run(
        [SAM, "build", "--build-dir", str(build), "WalletCreateFunction", "--parameter-overrides", "Architecture=x86_64"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    print(f"sam build WalletCreateFunction: {time.time() - started:.0f}s\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    assert run.returncode == 0, run.stderr[-3000:]
    built = build / "WalletCreateFunction" / "bootstrap"
    assert built.exists(), f"sam build made no {built}"

    out = tmp_path / "built"
    endpoint = json.loads((SAM_STATE / "env-vars.json").read_text())["Parameters"]["AWS_ENDPOINT_URL"]
    generate = [sys.executable, str(ROOT / "tools" / "sam-local" / "generate.py"), "--template", str(build / "template.yaml"), "--endpoint", endpoint, "--out", str(out)]
    subprocess.run(generate, check=True)
    template = json.loads((out / "template.json").read_text())
    assert template["Resources"]["WalletCreateFunction"]["Properties"]["CodeUri"] == str((build / "WalletCreateFunction").resolve())

    owner = f"sam-{uuid.uuid4()}"
    event = tmp_path / "event.json"
    event.write_text(json.dumps(api_event("api-wallet-create.json", owner)))
    invoke = [SAM, "local", "invoke", "WalletCreateFunction", "--event", str(event), "--template", str(out / "template.json")]
    invoke += ["--env-vars", str(SAM_STATE / "env-vars.json"), "--skip-pull-image"]
    run = subprocess.run(invoke, env=sam_env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Mounting {(build / 'WalletCreateFunction').resolve()} as /var/task" in run.stderr, run.stderr[-3000:]
    response = json.loads(run.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 201, response
    wallet = json.loads(response["body"])["walletId"]
    assert event_types(stack, f"wallet#{wallet}") == ["WalletCreated", "WalletCredited"]
