"""Run the Pulumi program in infra/ under Pulumi's mock runtime and collect its exports."""

import asyncio
import contextlib
import os
import pickle
import runpy
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import yaml
from pulumi.runtime.sync_await import _ensure_event_loop

from engine_harness.docker_mocks import OptionsMonitor

REPO_ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = REPO_ROOT / "infra"


def project_name() -> str:
    """The project name from Pulumi.yaml (the namespace of every config key)."""
    with open(REPO_ROOT / "Pulumi.yaml", encoding="utf-8") as file:
        return str(yaml.safe_load(file)["name"])


def offline_base_images(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The offline base images by role ("api", "proxy", "pypy"): API_BASE_IMAGE,
    PROXY_BASE_IMAGE, PYPY_BASE_IMAGE from `environ`, else from base-images/images.env (what
    base-images/build.sh makes)."""
    names: dict[str, str] = {}
    for line in (REPO_ROOT / "base-images" / "images.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            names[key.strip()] = environ.get(key.strip(), value.strip())
    return {
        "api": names["API_BASE_IMAGE"],
        "proxy": names["PROXY_BASE_IMAGE"],
        "pypy": names["PYPY_BASE_IMAGE"],
    }


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
    mocks: pulumi.runtime.Mocks,
    stack: str,
    config: dict[str, str],
    project: str | None = None,
    secret_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Run infra/__main__.py once under `mocks`; return its exports, resolved.

    `config` uses full keys ("<project>:proxyPort"), as in Pulumi.<stack>.yaml; `secret_keys`
    are those set with `--secret`. Raises what the program raises (a ConfigError, a failed
    resource) once the registrations under way have ended (the mocks' `settle`).
    """
    project = project or project_name()
    pulumi.runtime.set_all_config(config, list(secret_keys))
    # The monitor hands each registration's options (delete_before_replace, ...) to the mocks.
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=False, monitor=OptionsMonitor(mocks)
    )
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
    # The SDK's serialize_provider (pulumi/dynamic/dynamic.py) wraps pickle._Pickler's
    # _batch_setitems anew for every dynamic resource and never puts it back: in a process
    # that runs the program many times (the tests), the wrappers nest until RecursionError.
    # `pulumi up` runs it once per process; so does each run here.
    pickler: Any = pickle._Pickler
    saved = pickler._batch_setitems, pickler.save_dict
    try:
        with _program_environment():
            run()
    except Exception as failure:
        _already_raised(failure)
        settle = getattr(mocks, "settle", None)
        if settle is not None:  # what the engine does: no step is left half-way
            settle()
        raise
    finally:
        pulumi.export = original_export
        pickler._batch_setitems, pickler.save_dict = saved
    return exports


# Failures run_program has raised, as "Type: message".
_RAISED: set[str] = set()


def _already_raised(failure: Exception) -> None:
    """Keep asyncio from repeating a failure that was raised to the caller.

    Every output of a failed resource (and of what depends on it) is a future holding the same
    exception; nothing awaits them once the run has failed, so at garbage collection asyncio
    reports each as "exception was never retrieved", with a traceback: over a hundred after
    one failed container. Those reports are dropped; any other goes to asyncio's handler.
    """
    _RAISED.add(f"{type(failure).__name__}: {failure}")
    loop = _ensure_event_loop()  # the loop the mock runtime ran on

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if (
            "never retrieved" in str(context.get("message"))
            and f"{type(exception).__name__}: {exception}" in _RAISED
        ):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
