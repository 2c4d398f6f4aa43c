"""The template's GitHub Actions workflow: actionlint finds nothing wrong, every action is
pinned by commit, and the jobs do what the README says (lint and unit tests everywhere;
preview on pull requests and up on the default branch, on the self-hosted Docker runner)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.commands import run
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def actionlint() -> str:
    """The actionlint that requirements-dev.txt installs into the virtualenv (or one on PATH)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: pip install -r requirements-dev.txt")
    return found


def lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # From the repository's root: actionlint reads .github/actionlint.yaml there.
    return run([actionlint(), "-no-color", *args], REPO_ROOT, stdin=stdin)


def test_actionlint_finds_nothing_wrong() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    done = lint(*[str(path) for path in WORKFLOWS])
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_copy() -> None:
    """The check is real: the same workflow with a misspelt runner and a bad expression fails."""
    broken = (
        WORKFLOWS[0]
        .read_text()
        .replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latst")
        .replace("${{ steps.up.outputs.url }}", "${{ steps.up.outputs.url }")
    )
    done = lint("-", stdin=broken)
    assert done.returncode == 1, done.stdout
    assert 'label "ubuntu-latst" is unknown' in done.stdout
    assert "steps.up.outputs.url" in done.stdout


def uses(document: dict[str, Any]) -> list[str]:
    return [
        step["uses"]
        for job in document["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_commit(path: Path) -> None:
    """`owner/repo@<commit SHA> # vX.Y.Z`: a tag can be moved to other code, a commit can't."""
    written = [
        line.split("uses:", 1)[1].strip()
        for line in path.read_text().splitlines()
        if re.match(r"\s*(- )?uses:", line)
    ]
    assert len(written) == len(uses(yaml.safe_load(path.read_text()))), path.name
    for action in written:
        assert PINNED.match(action), f"{path.name}: {action} is not pinned by commit SHA"


def test_the_jobs_run_where_and_when_the_readme_says() -> None:
    (workflow,) = [path for path in WORKFLOWS if path.name == "pulumi.yml"]
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    assert jobs["test"]["runs-on"] == "ubuntu-latest"
    assert [step.get("run") for step in jobs["test"]["steps"]][-2:] == [
        "make lint",
        ".venv/bin/pytest -m unit",
    ]
    for name, command in (("preview", "preview"), ("deploy", "up")):
        job = jobs[name]
        assert job["runs-on"] == ["self-hosted", "linux", "docker"], name
        assert job["needs"] == "test", name
        (pulumi,) = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
        assert pulumi["with"]["command"] == command, name
        assert pulumi["with"]["policyPacks"] == "policy", name
        assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}", name
        for secret in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN"):
            assert pulumi["env"][secret] == f"${{{{ secrets.{secret} }}}}", name
    # Code from a fork's pull request never runs on the deploy host.
    assert "head.repo.full_name == github.repository" in jobs["preview"]["if"]
    assert "github.event.repository.default_branch" in jobs["deploy"]["if"]
