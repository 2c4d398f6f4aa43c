"""`pulumi new` from this repository creates a project that deploys: rendered as the CLI renders
it (tests/template/pulumi_new.py), then run under the mock runtime with the config it wrote."""

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import contract
from rest_api_stack import dockerfile_base_image
from tests.commands import run
from tests.conftest import REPO_ROOT
from tests.template.pulumi_new import PLACEHOLDERS, render, template_files

pytestmark = pytest.mark.unit

TEMPLATE = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
URL = "https://example.com/team/pulumi-flask-rebar"


def run_rendered(project: Path, stack: str) -> tuple[dict[str, Any], str]:
    """What the rendered program declares and exports, and the warnings it printed."""
    environment = os.environ | {"PYTHONPATH": f"{project}{os.pathsep}{project / 'infra'}"}
    done = run([sys.executable, "tests/template/run_rendered.py", stack], project, env=environment)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def containers(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in run["resources"] if r["type"] == "docker:index/container:Container"]


def test_no_file_has_a_placeholder() -> None:
    """`pulumi new` replaces its placeholders for the project's name and description in every
    text file (in .yaml files with a YAML string that ends in a line break): none occurs, so
    every file but Pulumi.yaml and the stack file is copied as it is."""
    for name in template_files(REPO_ROOT):
        data = (REPO_ROOT / name).read_bytes()
        assert not any(p.encode() in data for p in PLACEHOLDERS), name


def test_defaults_keep_the_name_and_the_dev_stack(tmp_path: Path) -> None:
    """`pulumi new <url> --yes`: the template's project name and description, stack dev. The
    copied Pulumi.dev.yaml is the stack file, with the template's defaults written over the
    same values: the repository's dev stack, on the Dockerfiles' base images."""
    name, description = TEMPLATE["name"], TEMPLATE["description"]
    config = render(REPO_ROOT, tmp_path, name=name, description=description, stack="dev", url=URL)
    dev = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert config == dev
    run, warnings = run_rendered(tmp_path, "dev")
    assert "not read" not in warnings
    assert {c["name"] for c in containers(run)} == {
        f"{name}-dev-{role}" for role in ("api-1", "api-2", "proxy")
    }
    images = [r for r in run["resources"] if r["type"] == "docker:index/image:Image"]
    bases = {image["inputs"]["build"]["args"]["BASE_IMAGE"] for image in images}
    contexts = (contract.API_CONTEXT, contract.PROXY_CONTEXT)
    assert bases == {dockerfile_base_image(context) for context in contexts}
    assert run["exports"][contract.EXPORT_URL] == "https://127.0.0.1:8080"


def test_a_new_name_and_stack_get_the_defaults_under_the_new_name(tmp_path: Path) -> None:
    config = render(
        REPO_ROOT, tmp_path, name="my-api", description="My API", stack="staging", url=URL
    )
    project = yaml.safe_load((tmp_path / "Pulumi.yaml").read_text())
    assert (project["name"], project["description"]) == ("my-api", "My API")
    assert "template" not in project
    expected = {
        f"my-api:{key}": entry["default"]
        for key, entry in TEMPLATE["template"]["config"].items()
        if "default" in entry
    }
    assert config == expected
    run, warnings = run_rendered(tmp_path, "staging")
    assert "not read" not in warnings
    for container in containers(run):
        assert container["name"].startswith("my-api-staging-"), container["name"]
        labels = {entry["label"]: entry["value"] for entry in container["inputs"]["labels"]}
        assert labels[contract.LABEL_PROJECT] == "my-api", container["name"]
    # No base image configured: the Dockerfiles' own (the official images).
    images = [r for r in run["resources"] if r["type"] == "docker:index/image:Image"]
    bases = {image["inputs"]["build"]["args"]["BASE_IMAGE"] for image in images}
    assert {base.split(":")[0] for base in bases} == {"python", "nginx"}


def test_a_new_name_on_the_dev_stack_deploys_and_names_the_copied_keys(tmp_path: Path) -> None:
    """The copied Pulumi.dev.yaml keeps the template's namespace; the defaults are added under
    the new one. The program deploys with its own keys and warns about each copied one."""
    render(REPO_ROOT, tmp_path, name="my-api", description="My API", stack="dev", url=URL)
    run, warnings = run_rendered(tmp_path, "dev")
    assert {c["name"] for c in containers(run)} == {
        f"my-api-dev-{role}" for role in ("api-1", "api-2", "proxy")
    }
    (line,) = [line for line in warnings.splitlines() if line.startswith("not read: ")]
    copied = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert line.removeprefix("not read: ").split(". ")[0].split(", ") == sorted(copied)
