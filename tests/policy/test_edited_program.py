"""What `make policy` does for a user who edits the program: in a copy of the project with one
hardening setting dropped from the source, the no-CLI check (policy/mock_preview.py, what
`make policy` runs without the pulumi CLI) fails and names the setting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands import run
from tests.conftest import REPO_ROOT
from tests.template.pulumi_new import copy_files

pytestmark = pytest.mark.unit


def make_policy(project: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "policy/mock_preview.py", "--stack", "dev"]
    return run(command, project, env=os.environ | {"PYTHONPATH": str(project)})


def test_the_unedited_copy_passes(tmp_path: Path) -> None:
    copy_files(REPO_ROOT, tmp_path)
    done = make_policy(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 violations" in done.stdout


@pytest.mark.parametrize(
    ("path", "dropped", "policy", "says"),
    [
        ("infra/rest_api_stack.py", "            read_only=True,\n", "read-only-root", "read_only"),
        (
            "infra/rest_api_stack.py",
            '            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),\n',
            "drop-all-capabilities",
            'drops=["ALL"]',
        ),
        (
            "infra/rest_api_stack.py",
            "        ip=settings.proxy_bind_address,\n",
            "ports-on-bind-address",
            "all interfaces",
        ),
        (
            "service/Dockerfile",
            "HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \\\n"
            '    CMD ["python", "/app/healthcheck.py"]\n',
            "health-check",
            "service/Dockerfile",
        ),
    ],
)
def test_a_setting_dropped_from_the_source_fails_make_policy(
    tmp_path: Path, path: str, dropped: str, policy: str, says: str
) -> None:
    copy_files(REPO_ROOT, tmp_path)
    source = (tmp_path / path).read_text()
    assert source.count(dropped) == 1, f"{path} no longer holds {dropped!r}"
    (tmp_path / path).write_text(source.replace(dropped, ""))
    done = make_policy(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    violations = [line for line in done.stdout.splitlines() if line.startswith("mandatory")]
    assert violations, done.stdout
    for line in violations:
        assert f"[{policy}]" in line and says in line, line
