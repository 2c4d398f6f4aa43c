"""The real pulumi CLI.

Its own commands (stacks, config, secrets) need nothing but the CLI, which `make pulumi-cli`
builds from Go modules where no other is installed: these tests check the harness's reading of
stack files and its secrets against it.

A deploy also needs the CLI's Python language host and the docker and tls provider plugins,
which a Go module proxy does not serve (docs/pulumi-cli.md): the deploy test runs where they
are installed (the official CLI fetches its plugins itself)."""

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import yaml
from pulumi import automation as auto

import contract
from engine_harness import state_secrets
from engine_harness.program import REPO_ROOT, stack_config
from tests.commands import run
from tests.conftest import unavailable
from tests.engine_stacks import PROJECT, side_by_side_config, stack_objects

# `make pulumi-cli` puts the CLI it builds here (the Makefile adds it to PATH).
BUILT_CLI_DIR = REPO_ROOT / ".pulumi-cli" / "bin"
PASSPHRASE = secrets.token_hex(16)  # the state of these tests only
# A pulumi command in a project directory: cli(project, *arguments) -> the finished process.
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def pulumi_path() -> str:
    found = shutil.which("pulumi") or shutil.which("pulumi", path=str(BUILT_CLI_DIR))
    if found is None:
        unavailable("no pulumi CLI: install it, or run `make pulumi-cli`")
    return found


@pytest.fixture
def cli(pulumi_path: str, tmp_path: Path) -> Cli:
    """pulumi with a file backend, a passphrase and a home of this test's own."""
    environment = os.environ | {
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    (tmp_path / "state").mkdir()

    def pulumi(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
        done = run([pulumi_path, *arguments, "--non-interactive"], project, env=environment)
        assert done.returncode == 0, f"pulumi {' '.join(arguments)}: {done.stderr}"
        return done

    return pulumi


def project_with_stack(tmp_path: Path, stack: str) -> Path:
    """A copy of the project file and one stack file (`stack init` writes to the stack file)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", f"Pulumi.{stack}.yaml"):
        shutil.copy(REPO_ROOT / name, project / name)
    return project


@pytest.mark.cli
@pytest.mark.parametrize("stack", ["dev", "swarm"])
def test_the_harness_gives_the_program_the_config_the_cli_reads(
    cli: Cli, tmp_path: Path, stack: str
) -> None:
    """The CLI accepts the project and stack files, and the values it reads from them are the
    ones the harness runs the program with."""
    project = project_with_stack(tmp_path, stack)
    cli(project, "stack", "init", stack)
    read = json.loads(cli(project, "config", "--json", "--stack", stack).stdout)
    assert {key: entry["value"] for key, entry in read.items()} == stack_config(stack)


@pytest.mark.cli
def test_the_harness_and_the_cli_read_each_others_secrets(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness encrypts its state's secrets as the CLI's passphrase secrets manager does:
    each decrypts what the other encrypted, with the same passphrase and salt."""
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    project = project_with_stack(tmp_path, "dev")
    cli(project, "stack", "init", "dev")
    by_cli, by_harness = secrets.token_hex(16), secrets.token_hex(16)
    cli(project, "config", "set", "--secret", "tlsPrivateKey", by_cli)
    stack_file = project / "Pulumi.dev.yaml"
    document = yaml.safe_load(stack_file.read_text())
    salt = document["encryptionsalt"].split(":")[1]
    key = f"{PROJECT}:tlsPrivateKey"
    assert state_secrets.decrypt_text(document["config"][key]["secure"], salt) == by_cli

    document["config"][key]["secure"] = state_secrets.encrypt_text(by_harness, salt)
    stack_file.write_text(yaml.safe_dump(document))
    read = cli(project, "config", "get", "tlsPrivateKey").stdout.strip()
    assert read == by_harness


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
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
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


@pytest.mark.pulumi
@pytest.mark.skipif(
    shutil.which("pulumi-language-python") is None,
    reason="no pulumi-language-python: the CLI runs no Python program without its language "
    "host and plugins, which a Go module proxy does not serve (docs/pulumi-cli.md)",
)
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
