"""Run the Pulumi program in infra/ under Pulumi's mock runtime and collect its exports."""

import contextlib
import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = REPO_ROOT / "infra"


def project_name() -> str:
    """The project name from Pulumi.yaml (the namespace of every config key)."""
    with open(REPO_ROOT / "Pulumi.yaml", encoding="utf-8") as file:
        return str(yaml.safe_load(file)["name"])


def stack_config(stack: str) -> dict[str, str]:
    """The `config:` map of Pulumi.<stack>.yaml, with values as the CLI passes them (strings)."""
    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"stack {stack!r} has no {path.name} in {REPO_ROOT}")
    with open(path, encoding="utf-8") as file:
        document = yaml.safe_load(file) or {}
    return {key: str(value) for key, value in (document.get("config") or {}).items()}


@contextlib.contextmanager
def _program_environment() -> Iterator[None]:
    """The working directory and import path that `pulumi up` gives the program (`main`)."""
    previous_cwd = Path.cwd()
    sys.path.insert(0, str(INFRA_DIR))  # first, as for pulumi
    os.chdir(INFRA_DIR)
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        sys.path.remove(str(INFRA_DIR))


def run_program(
    mocks: pulumi.runtime.Mocks, stack: str, config: dict[str, str], project: str | None = None
) -> dict[str, Any]:
    """Run infra/__main__.py once under `mocks`; return its exports, resolved.

    `config` uses full keys ("<project>:proxyPort"), as in Pulumi.<stack>.yaml. Raises what the
    program raises (a ConfigError, a failed resource) after all registrations have settled.
    """
    project = project or project_name()
    pulumi.runtime.set_all_config(config)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    exports: dict[str, Any] = {}
    declared: dict[str, Any] = {}

    def capture(name: str, value: Any) -> None:
        declared[name] = value

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(INFRA_DIR / "__main__.py"), run_name="__main__")
        return pulumi.Output.all(**declared).apply(exports.update)

    original_export = pulumi.export
    pulumi.export = capture
    try:
        with _program_environment():
            run()
    finally:
        pulumi.export = original_export
    return exports
