"""What `make policy` does for a user who edits the program: in a copy of the project with one
hardening setting dropped from the source, the no-CLI check (policy/mock_preview.py, what
`make policy` runs without the pulumi CLI) fails and names the setting: for the containers of
the dev stack, and for the services of the swarm stack."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands import run
from tests.conftest import REPO_ROOT
from tests.template.pulumi_new import copy_files

pytestmark = pytest.mark.unit

# The API image's health check, in service/Dockerfile.
API_HEALTHCHECK = (
    "HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \\\n"
    '    CMD ["python", "/app/healthcheck.py"]\n'
)


def make_policy(project: Path, stack: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "policy/mock_preview.py", "--stack", stack]
    return run(command, project, env=os.environ | {"PYTHONPATH": str(project)})


@pytest.mark.parametrize("stack", ["dev", "swarm"])
def test_the_unedited_copy_passes(tmp_path: Path, stack: str) -> None:
    copy_files(REPO_ROOT, tmp_path)
    done = make_policy(tmp_path, stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 violations" in done.stdout


@pytest.mark.parametrize(
    ("stack", "path", "dropped", "policy", "says"),
    [
        (
            "dev",
            "infra/rest_api_stack.py",
            "            read_only=True,\n",
            "read-only-root",
            "read_only",
        ),
        (
            "dev",
            "infra/rest_api_stack.py",
            '            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),\n',
            "drop-all-capabilities",
            'drops=["ALL"]',
        ),
        (
            "dev",
            "infra/rest_api_stack.py",
            "        ip=settings.proxy_bind_address,\n",
            "ports-on-bind-address",
            "all interfaces",
        ),
        (
            "dev",
            "service/Dockerfile",
            API_HEALTHCHECK,
            "health-check",
            "service/Dockerfile",
        ),
        (
            "swarm",
            "infra/swarm.py",
            '        cap_drops=["ALL"],\n',
            "drop-all-capabilities",
            'cap_drops=["ALL"]',
        ),
        ("swarm", "infra/swarm.py", 'publish_mode="host", ', "ports-in-host-mode", "routing mesh"),
        (
            "swarm",
            "service/Dockerfile",
            API_HEALTHCHECK,
            "health-check",
            "service pulumi-flask-rebar-swarm-api has no health check",
        ),
    ],
)
def test_a_setting_dropped_from_the_source_fails_make_policy(
    tmp_path: Path, stack: str, path: str, dropped: str, policy: str, says: str
) -> None:
    copy_files(REPO_ROOT, tmp_path)
    source = (tmp_path / path).read_text()
    assert source.count(dropped) == 1, f"{path} no longer holds {dropped!r}"
    (tmp_path / path).write_text(source.replace(dropped, ""))
    done = make_policy(tmp_path, stack)
    assert done.returncode == 1, done.stdout + done.stderr
    violations = [line for line in done.stdout.splitlines() if line.startswith("mandatory")]
    assert violations, done.stdout
    for line in violations:
        assert f"[{policy}]" in line and says in line, line
