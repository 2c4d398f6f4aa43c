"""base-images/choose.py, which `make up` and `make local-up` run first: a stack that names no
base image builds on the official ones where the engine has or pulls them, and on local ones
(set in its file, said in one line) where it can't."""

import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import docker
import pytest
import yaml

import contract
from scripts.generate_config import dev_stack
from tests.conftest import REPO_ROOT
from tests.infra.conftest import PROJECT


def _choose() -> ModuleType:
    spec = importlib.util.spec_from_file_location("choose", REPO_ROOT / "base-images/choose.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


choose = _choose()


def _project(root: Path, official: dict[str, str], stack: str = "") -> Path:
    """A copy of the project's files choose.py reads, its Dockerfiles building on `official`
    by context; the dev stack's file, or `stack` as the file's text."""
    shutil.copy(REPO_ROOT / "Pulumi.yaml", root)
    for context, base in official.items():
        dockerfile = (REPO_ROOT / context / "Dockerfile").read_text()
        (root / context).mkdir()
        (root / context / "Dockerfile").write_text(
            re.sub(r"(?m)^ARG BASE_IMAGE=\S+$", f"ARG BASE_IMAGE={base}", dockerfile)
        )
    path = root / "Pulumi.dev.yaml"
    path.write_text(stack or (REPO_ROOT / "Pulumi.dev.yaml").read_text())
    return path


def _said(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("base images:")]


@pytest.mark.engine
def test_an_official_base_the_engine_has_is_kept_and_one_it_cant_pull_is_replaced_by_a_local_one(
    tmp_path: Path,
    base_images: dict[str, str],
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Stand-ins for the official images: one the engine has, one that no registry serves.
    absent = "absent.invalid/python:3.14-slim-trixie"
    official = {contract.API_CONTEXT: absent, contract.PROXY_CONTEXT: base_images["proxy"]}
    path = _project(tmp_path, official)

    assert choose.main(["--stack", "dev"], tmp_path) == 0
    (line,) = _said(capsys.readouterr().out)
    assert f"can't pull {absent} (" in line and "sets apiBaseImage to local ones" in line, line
    assert "proxyBaseImage" not in line, line
    config = yaml.safe_load(path.read_text())["config"]
    assert config[f"{PROJECT}:apiBaseImage"] == base_images["api"]
    assert f"{PROJECT}:proxyBaseImage" not in config
    assert dev_stack(path.read_text()) == path.read_text(), "not as `make generate` writes it"

    # Chosen once: the next run pulls nothing, says nothing and changes nothing.
    written = path.read_text()
    assert choose.main(["--stack", "dev"], tmp_path) == 0
    assert _said(capsys.readouterr().out) == []
    assert path.read_text() == written


@pytest.mark.unit
def test_a_stack_on_another_engine_is_left_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine in the stack's file may be another machine, which this host's can't speak for."""
    official = {contract.API_CONTEXT: "absent.invalid/python:3", contract.PROXY_CONTEXT: "ngx:1"}
    stack = "config:\n  docker:host: ssh://deploy@engine.example.com\n"
    path = _project(tmp_path, official, stack)
    assert choose.main(["--stack", "dev"], tmp_path) == 0
    said = _said(capsys.readouterr().out)
    pulled = "pulled by the engine docker:host names"
    assert said == [
        f"base images: apiBaseImage unset: absent.invalid/python:3, {pulled}",
        f"base images: proxyBaseImage unset: ngx:1, {pulled}",
    ]
    assert path.read_text() == stack
