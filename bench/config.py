"""What a run measures (scenarios.toml), the names of what it creates, and their removal."""

import contextlib
import os
import re
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import docker
import docker.errors

import contract

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = REPO_ROOT / "bench" / "results"
TABLES: Final = tomllib.loads((REPO_ROOT / "bench" / "scenarios.toml").read_text())
PATH: Final = "/"  # the one request every scenario measures
# The label of what the bench creates: its run's id ("<pid>-<hex>"). RUN matches that, or the
# name of a bench stack (bench<pid>x<hex>-<stack key>), which the harness labels its objects with.
BENCH_LABEL: Final = "pulumi-flask-rebar.bench"
PROJECT: Final = "pulumi-flask-rebar"
RUN: Final = re.compile(r"^(?:bench)?(\d+)[-x][0-9a-f]+(?:-[a-z]+)?$")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def rows(table: str, *required: str) -> list[dict[str, Any]]:
    """A table of scenarios.toml with [optional.<table>]'s defaults; a wrong key is refused."""
    optional = TABLES["optional"].get(table, {})
    for row in TABLES[table]:
        wrong = set(required) - set(row) | set(row) - set(required) - set(optional)
        if wrong:
            raise ValueError(f"scenarios.toml: {table} {row.get('key')!r}: keys {sorted(wrong)}")
    return [optional | row for row in TABLES[table]]


STACKS: Final = {row["key"]: row for row in rows("stack", "key", "title", "base")}
MAIN_STACK: Final = next(iter(STACKS))


@dataclass(frozen=True)
class Timing:
    """A table of scenarios.toml's [timing], which says what each field is."""

    concurrencies: list[int]
    warmup_s: int
    settle_runs: int
    duration_s: int
    runs: int
    sweep_duration_s: int
    sweep_runs: int
    sustained_s: int
    sustained_segments: int


@dataclass(frozen=True)
class Run:
    """One invocation: its timing, where results go, and the names of its Docker objects."""

    timing: Timing
    out_dir: Path
    quick: bool
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def stack(self, key: str = "") -> str:
        """The name of this run's stack `key` (a row of [[stack]]); without one, their prefix."""
        pid, token = self.run_id.split("-")
        return f"bench{pid}x{token}-{key}"

    def name(self, what: str) -> str:
        return f"pfr-bench-{self.run_id}-{what}"

    @property
    def labels(self) -> dict[str, str]:
        return {BENCH_LABEL: self.run_id}


def dead(run: str) -> bool:
    """Whether a run id or a bench stack's name names a process that is gone."""
    match = RUN.match(run)
    return match is not None and not Path(f"/proc/{match.group(1)}").exists()


def stack_images(client: docker.DockerClient, prefix: str = "bench") -> list[str]:
    """Tags of the images the engine harness built for bench stacks named `prefix`..."""
    images = client.images.list(filters={"reference": f"{PROJECT}-{prefix}*"})
    return [t for i in images for t in i.tags if t.startswith(f"{PROJECT}-{prefix}")]


def remove_objects(client: docker.DockerClient, run_id: str | None = None) -> list[str]:
    """Remove this run's objects, or (None) those of runs whose process is gone; their names."""

    def wanted(labels: dict[str, str]) -> bool:
        if BENCH_LABEL in labels:
            return labels[BENCH_LABEL] == run_id if run_id else dead(labels[BENCH_LABEL])
        ours = labels.get(contract.LABEL_PROJECT) == PROJECT
        return not run_id and ours and dead(labels.get(contract.LABEL_STACK, ""))

    removed: list[str] = []
    for container in client.containers.list(all=True):
        if wanted(container.labels):
            container.remove(force=True)
            removed.append(container.name)
    for network in client.networks.list():
        if wanted(network.attrs.get("Labels") or {}):
            network.remove()
            removed.append(network.name)
    for tag in stack_images(client) if run_id is None else []:
        if dead(tag.split(":")[-1]):
            remove_image(client, tag)
            removed.append(tag)
    return removed


def remove_image(client: docker.DockerClient, reference: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(reference, force=True)
