"""The real thing: `pulumi up`, smoke test, an `up` that changes nothing, a refresh that finds
nothing, and `destroy`, via the Automation API with a local file backend. Needs the pulumi CLI
and a Docker engine."""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from pulumi import automation as auto

import contract
from engine_harness.program import REPO_ROOT
from tests.engine_stacks import PROJECT, side_by_side_config, stack_objects

pytestmark = [
    pytest.mark.pulumi,
    pytest.mark.skipif(
        shutil.which("pulumi") is None,
        reason="the pulumi CLI is not installed (no registry here carries it); "
        "the engine-backed test proves the program on a real engine instead",
    ),
]


@pytest.fixture
def pulumi_stack(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    tmp_path: Path,
    unique_name: str,
) -> Iterator[auto.Stack]:
    workspace = auto.LocalWorkspaceOptions(
        env_vars={
            "PULUMI_BACKEND_URL": f"file://{tmp_path}",
            "PULUMI_CONFIG_PASSPHRASE": "",
        }
    )
    stack = auto.create_or_select_stack(unique_name, work_dir=str(REPO_ROOT), opts=workspace)
    config = side_by_side_config(docker_client, base_images)
    stack.set_all_config(
        {key.split(":", 1)[1]: auto.ConfigValue(value) for key, value in config.items()}
    )
    try:
        yield stack
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack(unique_name)
        (REPO_ROOT / f"Pulumi.{unique_name}.yaml").unlink(missing_ok=True)


def test_up_smoke_noop_up_destroy(
    pulumi_stack: auto.Stack, docker_client: docker.DockerClient, unique_name: str
) -> None:
    result = pulumi_stack.up(on_output=print)
    url = result.outputs[contract.EXPORT_URL].value
    smoke = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "smoke_test.py"), url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr

    # What the provider read back after the create is what the program declares: an `up`
    # plans no change, and a refresh finds none (docs/provider-fidelity.md).
    again = pulumi_stack.up(on_output=print)
    changes = {kind: count for kind, count in (again.summary.resource_changes or {}).items()}
    assert set(changes) == {"same"}, f"second up changed something: {changes}"
    refreshed = pulumi_stack.refresh(on_output=print)
    changes = {kind: count for kind, count in (refreshed.summary.resource_changes or {}).items()}
    assert set(changes) == {"same"}, f"refresh found changes: {changes}"

    pulumi_stack.destroy(on_output=print)
    assert stack_objects(docker_client, unique_name) == [], f"{PROJECT} left objects behind"
