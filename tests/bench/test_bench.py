"""The benchmark's quick mode end to end: it deploys what it measures, loads it, removes it, and
writes results.json and results.md where it is told. No figure is judged here: the
quick mode's seconds of load on a shared machine say nothing about the targets."""

import json
import subprocess
import sys
from numbers import Real
from pathlib import Path
from typing import Any

import docker
import pytest

from bench.config import TABLES
from bench.deploys import REDEPLOYS
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.engine

QUICK_TIMEOUT = 1500
SECTIONS = (
    "meta",
    "images",
    "deploys",
    "redeploys",
    "scenarios",
    "load",
    "setups",
    "sustained",
    "ratios",
    "errors",
    "targets",
)
FIGURES = ("rps", "p50_ms", "p99_ms", "non_2xx", "socket_errors")


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def assert_figures(cell: dict[str, Any], where: str) -> None:
    median = cell["median"]
    for key in FIGURES:
        assert is_number(median[key]), f"{where}: {key}={median[key]!r}"
    assert median["requests"] > 0, f"{where}: no request was answered"
    assert cell["runs"], f"{where}: no run"


@pytest.fixture(scope="module")
def containers_before(docker_client: docker.DockerClient) -> set[str]:
    """The engine's containers before the quick run."""
    return {container.id for container in docker_client.containers.list(all=True)}


@pytest.fixture(scope="module")
def quick_run(
    base_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    containers_before: set[str],
) -> tuple[Path, dict[str, Any]]:
    """One quick run for the module's tests (base_images: they must exist, see conftest)."""
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_writes_its_two_files(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = quick_run
    for name in ("results.json", "results.md"):
        assert (out / name).stat().st_size > 0, name
    markdown = (out / "results.md").read_text()
    for target in results["targets"]:
        assert target["name"] in markdown
    assert results["meta"]["quick"] is True


def test_every_section_has_numbers(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = quick_run
    assert set(SECTIONS) <= set(results)
    concurrencies = [str(c) for c in results["meta"]["timing"]["concurrencies"]]
    rows = {row["key"]: row for row in TABLES["scenario"]}
    assert list(results["load"]) == list(rows)
    for scenario, cells in results["load"].items():
        wanted = [str(c) for c in rows[scenario].get("concurrencies", [])] or concurrencies
        assert sorted(cells) == sorted(wanted), scenario
        for concurrency, cell in cells.items():
            assert_figures(cell, f"{scenario} c={concurrency}")
    for setup in results["setups"]["setups"]:
        assert_figures(setup, f"setup {setup['key']}")
    for name, series in results["sustained"]["series"].items():
        assert series, name
        for segment in series:
            assert segment["requests"] > 0 and is_number(segment["rps"]), name
    for ratio, values in results["ratios"].items():
        assert values and all(is_number(value) for value in values.values()), ratio
    for role in ("api", "proxy"):
        image = results["images"][role]
        for key in ("size_mb", "over_base_mb", "cold_build_s"):
            assert is_number(image[key]), f"{role} image {key}"
    assert is_number(results["images"]["api"]["app_change_build_s"])
    assert isinstance(results["images"]["api"]["layer_reuse"]["reused"], bool)
    for deploy in ("cold", "no_change", "app_change", "pypy_cold"):
        assert is_number(results["deploys"][deploy]["seconds"]), deploy
        assert is_number(results["deploys"][deploy]["containers_replaced"]), deploy
    assert set(results["redeploys"]) == {r["key"] for r in REDEPLOYS if r["quick"]}
    for key, redeploy in results["redeploys"].items():
        for figure in ("seconds", "requests", "failed", "p50_ms", "p99_ms", "slowest_s"):
            assert is_number(redeploy[figure]), f"redeploy {key} {figure}"
        assert redeploy["requests"] > 0, key
    for target in results["targets"]:
        assert isinstance(target["pass"], bool), target
        assert target["measured"] and target["measured"] != "not measured", target


def test_quick_run_leaves_nothing_behind(
    docker_client: docker.DockerClient,
    quick_run: tuple[Path, dict[str, Any]],
    containers_before: set[str],
) -> None:
    _, results = quick_run
    containers = docker_client.containers.list(all=True)
    left = [f"{c.name} ({c.status})" for c in containers if c.id not in containers_before]
    assert not left, f"the benchmark left containers behind (build steps included): {left}"
    stacks = list(results["meta"]["stacks"].values())
    labels = [f"pulumi-flask-rebar.bench={results['meta']['run_id']}"]
    labels += [f"pulumi.stack={stack}" for stack in stacks]
    # Its containers, labelled or not, are among those above; its networks are labelled.
    left = [
        n.name for label in labels for n in docker_client.networks.list(filters={"label": label})
    ]
    assert not left, f"the benchmark left networks behind: {left}"
    built = f"pfr-bench-{results['meta']['run_id']}-*"  # the images it builds itself
    images = docker_client.images.list(filters={"reference": built}) + [
        image
        for stack in stacks
        for image in docker_client.images.list(
            filters={"reference": f"pulumi-flask-rebar-{stack}-*"}
        )
    ]
    assert not images, f"the benchmark left images behind: {[i.tags for i in images]}"
