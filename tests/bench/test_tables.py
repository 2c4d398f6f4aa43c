"""The benchmark without an engine: its tables of scenarios.toml, the pure parts of a load run,
and results.md rendered from the committed results.json."""

import copy
import json
import os
from typing import Any

import pytest

import settings
from bench import config, deploys, load, report, scenarios
from bench.config import RESULTS_DIR, STACKS, TABLES
from engine_harness.program import offline_base_images
from rest_api_stack import API_RUNTIMES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

# The groups of containers `Servers.system` starts beside a stack, by role.
SYSTEMS = {
    "stack": {"proxy", "api-1", "api-2"},
    "capacity": {"api"},
    "baseline": {"nginx", "api"},
    "ceiling": {"nginx"},
    "plain": {"proxy", "api-1", "api-2"},
    "no_resumption": {"proxy", "api-1", "api-2"},
}
SCENARIO_KEYS = [s["key"] for s in scenarios.SCENARIOS]
# The limit for `make bench`, in seconds of load and warm-up alone (not counting
# deploys, image builds and container starts, about 90 s more).
FULL_RUN_LOAD_S = 600


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    """The last full run's results.json, with what report.evaluate adds."""
    results = json.loads((RESULTS_DIR / "results.json").read_text())
    report.evaluate(results)
    return results


@pytest.fixture
def with_pypy(committed: dict[str, Any]) -> dict[str, Any]:
    """The committed results with PyPy rows made up from the CPython ones: twice the requests
    per second at 0.8 times the p99 latency."""
    results = copy.deepcopy(committed)
    for pypy, cpython in (("pypy_proxied", "proxied"), ("pypy_direct", "direct")):
        results["load"][pypy] = copy.deepcopy(results["load"][cpython])
        for cell in results["load"][pypy].values():
            cell["median"]["rps"] *= 2
            cell["median"]["p99_ms"] *= 0.8
        results["scenarios"][pypy] = {"title": pypy, "how": "made up"}
    return results


def judged(results: dict[str, Any], key: str) -> dict[str, Any]:
    report.evaluate(results)
    index = [t["key"] for t in TABLES["target"]].index(key)
    return dict(results["targets"][index])


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=SCENARIO_KEYS)
def test_a_scenario_loads_a_container_of_its_system(scenario: dict[str, Any]) -> None:
    assert scenario["system"] in SYSTEMS, scenario["key"]
    assert scenario["stack"] in STACKS, scenario["key"]
    if not scenario["enter"]:
        assert scenario["system"] == "stack", f"{scenario['key']}: only the stack is published"
    else:
        assert scenario["enter"] in SYSTEMS[scenario["system"]], scenario["key"]
        assert scenario["port"] > 0, scenario["key"]
    assert scenario["how"].format(workers=2, apis=2), scenario["key"]


@pytest.mark.parametrize("stack", STACKS.values(), ids=list(STACKS))
def test_a_stack_is_one_the_program_accepts(stack: dict[str, Any]) -> None:
    """Its runtime and memory pass the settings' checks (apiMemoryMb for PyPy), its base is an
    offline base image."""
    runtime = stack["config"].get("apiRuntime", "cpython")
    assert runtime in API_RUNTIMES, stack["key"]
    memory = int(stack["config"].get("apiMemoryMb", 256))
    assert runtime != "pypy" or memory >= settings.PYPY_MEMORY_MB, stack["key"]
    assert stack["base"] in offline_base_images(), stack["key"]


def test_rows_name_the_first_stack_by_default() -> None:
    """The stack every section measures is the first row of [[stack]]: the CPython one."""
    assert (
        config.MAIN_STACK
        == "cpython"
        == STACKS[config.MAIN_STACK]["config"].get("apiRuntime", "cpython")
    )
    for table in ("scenario", "setup", "redeploy"):
        assert TABLES["optional"][table]["stack"] == config.MAIN_STACK, table


def test_both_runtimes_are_measured_proxied_and_direct() -> None:
    """Each stack has a row through its proxy (HTTPS, kept alive) and one at the same API
    capacity direct, and a cpu_budget ratio of the two."""
    for key in STACKS:
        rows = [s for s in scenarios.SCENARIOS if s["stack"] == key]
        through = [s for s in rows if s["system"] == "stack" and not s["headers"]]
        proxied = {s["key"] for s in through if s["scheme"] == "https"}
        direct = {s["key"] for s in rows if s["system"] == "capacity"}
        budgets = [r for r in report.RATIOS if r["cpu_budget"] and r["top"] in proxied]
        assert [(r["top"], r["bottom"]) for r in budgets] == [(*proxied, *direct)], key


@pytest.mark.parametrize("ratio", TABLES["ratio"], ids=[r["key"] for r in TABLES["ratio"]])
def test_a_ratio_compares_two_scenarios_by_a_median(ratio: dict[str, Any]) -> None:
    assert {ratio["top"], ratio["bottom"]} <= set(SCENARIO_KEYS), ratio["key"]
    assert ratio.get("figure", "rps") in load.MEDIANS


@pytest.mark.parametrize("setup", scenarios.SETUPS, ids=[s["key"] for s in scenarios.SETUPS])
def test_a_setup_changes_what_it_names(setup: dict[str, Any]) -> None:
    """Each replaced line is in proxy/nginx.conf once (proxy_files raises otherwise)."""
    assert setup["stack"] in STACKS, setup["key"]
    conf = scenarios.proxy_files(setup)["nginx.conf"]
    for old, new in setup["replacements"].items():
        assert old not in conf.replace(new, ""), f"{setup['key']}: {old!r}"
    if not setup["replacements"] and not setup["conf"]:
        assert conf == (REPO_ROOT / "proxy" / "nginx.conf").read_text(), setup["key"]


def test_the_full_handshake_proxy_turns_off_every_way_to_resume() -> None:
    """Its tls.conf has no session cache and no tickets; the rest is the stack's tls.conf."""
    tls_conf = scenarios.edited(scenarios.TLS_CONF, TABLES["no_resumption"])
    stack, changed = (set(text.splitlines()) for text in (scenarios.TLS_CONF.read_text(), tls_conf))
    assert stack - changed == {"ssl_session_cache shared:tls_sessions:10m;"}
    assert changed - stack == {"ssl_session_cache off;", "ssl_session_tickets off;"}


def test_each_stack_has_a_setup_as_deployed() -> None:
    """The first setup of each stack changes nothing: the others are compared with it."""
    for key in STACKS:
        first = next(s for s in scenarios.SETUPS if s["stack"] == key)
        changes = (first["api_environment"], first["replacements"], first["conf"], first["sysctls"])
        assert changes == ({}, {}, "", {}), key


def test_pypy_workers_and_threads_are_compared_on_the_same_cores() -> None:
    """At least 1x4 (as deployed), 2x4, 2x8 and 4x2 workers x threads per API container."""
    compared = set()
    for setup in [s for s in scenarios.SETUPS if s["stack"] == "pypy"]:
        environment = setup["api_environment"]
        workers, threads = (
            environment.get("WEB_CONCURRENCY", "1"),
            environment.get("GUNICORN_THREADS", "4"),
        )
        compared.add(f"{workers}x{threads}")
    assert {"1x4", "2x4", "2x8", "4x2"} <= compared


@pytest.mark.parametrize("redeploy", deploys.REDEPLOYS, ids=[r["key"] for r in deploys.REDEPLOYS])
def test_a_redeploy_changes_files_of_the_repository(redeploy: dict[str, Any]) -> None:
    for relative in [*redeploy["append"], *redeploy["restore"]]:
        assert (REPO_ROOT / relative).is_file(), f"{redeploy['key']}: {relative}"
    assert redeploy["append"] or redeploy["restore"] or redeploy["config"], redeploy["key"]
    assert redeploy["stack"] in STACKS, redeploy["key"]


def test_quick_runs_keep_the_app_changes_of_both_stacks() -> None:
    """The layer evidence's deploy, and PyPy's redeploy with its p99."""
    quick = {(r["key"], r["stack"]) for r in deploys.REDEPLOYS if r["quick"]}
    assert {("app_change", "cpython"), ("pypy_app_change", "pypy")} <= quick


def test_a_row_with_an_unknown_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = copy.deepcopy(TABLES)
    tables["setup"].append({"key": "typo", "title": "t", "api_enviroment": {}})
    monkeypatch.setattr(config, "TABLES", tables)
    with pytest.raises(ValueError, match="api_enviroment"):
        config.rows("setup", "key", "title")


def full_run_load_seconds() -> int:
    """Seconds of load (warm-ups at their longest) that the full timing's rows add up to."""
    t, stacks = config.Timing(**TABLES["timing"]["full"]), STACKS
    seconds = 0
    for s in scenarios.SCENARIOS:
        warmups = t.settle_runs if stacks[s["stack"]]["warm_until_stable"] else 1
        cells = len(s["concurrencies"] or t.concurrencies)
        seconds += cells * (warmups * t.warmup_s + t.runs * t.duration_s)
    for s in scenarios.SETUPS:
        warmups = t.settle_runs if stacks[s["stack"]]["warm_until_stable"] else 1
        seconds += warmups * t.warmup_s + t.sweep_runs * t.sweep_duration_s
    after = sum(r["after_s"] for r in deploys.REDEPLOYS)
    return seconds + t.sustained_s * t.sustained_segments + after


def test_the_full_run_keeps_to_its_time() -> None:
    assert full_run_load_seconds() <= FULL_RUN_LOAD_S


def test_both_timings_have_every_field() -> None:
    for mode in ("full", "quick"):
        assert config.Timing(**TABLES["timing"][mode]).concurrencies, mode


def run(rps: float, p99_ms: float, proxy_us: float, non_2xx: int = 0) -> dict[str, Any]:
    figures = dict.fromkeys(("p50_ms", "p90_ms", "mean_ms"), 1.0)
    cpu = {"proxy": proxy_us, "api-1": 2 * proxy_us}
    return figures | {
        "rps": rps,
        "p99_ms": p99_ms,
        "requests": int(rps),
        "non_2xx": non_2xx,
        "socket_errors": {"connect": 1, "read": 0, "write": 0, "timeout": 0},
        "cpu_cores": cpu,
        "cpu_us_per_request": cpu,
    }


def test_a_cell_is_the_median_of_its_runs_and_the_sum_of_its_errors() -> None:
    cell = load.summarize([run(100, 9, 10), run(300, 3, 30, non_2xx=2), run(200, 5, 20)])
    assert (cell["rps"], cell["p99_ms"], cell["rps_spread"]) == (200, 5, [100, 300])
    assert cell["cpu_us_per_request"] == {"proxy": 20, "api-1": 40}
    assert (cell["requests"], cell["non_2xx"], cell["socket_errors"]) == (600, 2, 3)


def test_cpu_left_to_no_part_is_other() -> None:
    before = {"wall": 0.0, "machine": 0.0, "containers": {"proxy": 1.0}, "engine": 0, "wrk": 0}
    after = {"wall": 2.0, "machine": 3.0, "containers": {"proxy": 2.0}, "engine": 0.5, "wrk": 1.0}
    cores = load.cpu_usage(before, after)
    assert cores == {"proxy": 0.5, "engine": 0.25, "wrk": 0.5, "other": 0.25, "machine": 1.5}


def test_wrk_gets_a_connection_per_thread() -> None:
    assert [load.threads_for(c) for c in (1, 16, 64)] == [1, 2, 2]


@pytest.mark.parametrize(
    ("warmup", "rps", "runs"),
    [
        ((2, 1), [1000, 2000], 1),  # one warm-up run, as on CPython
        ((2, 8), [1000, 2000, 3000, 3100], 4),  # PyPy's JIT: until it rises less than 5%
        ((2, 3), [1000, 2000, 3000, 4000], 3),  # at most so many
        ((0, 8), [1000], 0),  # none (sustained load)
    ],
)
def test_a_warm_up_goes_on_until_throughput_settles(
    monkeypatch: pytest.MonkeyPatch, warmup: tuple[int, int], rps: list[int], runs: int
) -> None:
    answers = iter(rps)
    monkeypatch.setattr(load, "run", lambda *_: {"rps": next(answers)})
    target = load.Target("http://127.0.0.1:8000/", None, warmup=warmup)
    assert [r["rps"] for r in load.warm_up(target, 64)] == rps[:runs]


def test_the_published_scenario_loads_from_the_host() -> None:
    (published,) = [s for s in scenarios.SCENARIOS if not s["enter"]]
    target = scenarios.target(published, {"proxy": None}, "http://127.0.0.1:8080")
    assert (target.url, target.netns_pid) == ("http://127.0.0.1:8080/", None)


def test_a_bench_stack_names_the_process_of_its_run() -> None:
    run_ = config.Run(config.Timing(**TABLES["timing"]["quick"]), RESULTS_DIR, quick=True)
    assert not config.dead(run_.stack("pypy")) and not config.dead(run_.run_id)
    assert run_.stack("pypy").startswith(run_.stack())
    gone = f"{max(int(pid) for pid in os.listdir('/proc') if pid.isdigit()) + 1000000}"
    assert config.dead(f"bench{gone}xabc123-pypy") and config.dead(f"{gone}-abc123")
    assert not config.dead("dev")


def test_the_committed_report_is_rendered_from_the_committed_results(
    committed: dict[str, Any],
) -> None:
    """results.md is what the template makes of results.json: tables only, nothing by hand."""
    assert report.markdown(committed) == (RESULTS_DIR / "results.md").read_text()


def test_the_derived_sections_are_recomputed_as_committed(committed: dict[str, Any]) -> None:
    stored = json.loads((RESULTS_DIR / "results.json").read_text())
    for section in ("ratios", "errors", "targets"):
        assert committed[section] == stored[section], section


def test_every_target_is_judged(committed: dict[str, Any]) -> None:
    names = [t["name"] for t in committed["targets"]]
    assert len(names) == len(TABLES["target"]) == len(set(names))
    assert all(isinstance(t["pass"], bool) and t["measured"] for t in committed["targets"])


def test_a_target_without_its_figures_is_not_measured(committed: dict[str, Any]) -> None:
    """A run without the PyPy stack's rows: its targets say so, and fail."""
    results = copy.deepcopy(committed)
    for scenario in ("pypy_proxied", "pypy_direct"):
        results["load"].pop(scenario, None)
    for key in ("pypy_speedup", "pypy_latency", "pypy_over_baseline"):
        assert judged(results, key)["measured"] == "not measured", key
        assert not judged(results, key)["pass"], key


@pytest.mark.parametrize(
    ("key", "measured"), [("pypy_speedup", "2.00x"), ("pypy_latency", "0.80x")]
)
def test_the_pypy_targets_compare_it_with_the_cpython_stack(
    with_pypy: dict[str, Any], key: str, measured: str
) -> None:
    """Twice CPython's req/s passes 1.6x, 0.8 of its p99 passes."""
    target = judged(with_pypy, key)
    assert measured in target["measured"], target
    assert target["pass"], target


def test_the_pypy_stack_is_compared_with_the_original_post(with_pypy: dict[str, Any]) -> None:
    """The PyPy stack's req/s over the original post's, judged against 5x."""
    cells = [with_pypy["load"][key]["64"]["median"]["rps"] for key in ("pypy_proxied", "baseline")]
    ratio = cells[0] / cells[1]
    target = judged(with_pypy, "pypy_over_baseline")
    assert f"{ratio:.2f}x" in target["measured"], target
    assert target["pass"] == (ratio >= 5), target


def test_the_report_gives_the_proxy_budget_of_both_stacks(with_pypy: dict[str, Any]) -> None:
    report.evaluate(with_pypy)
    markdown = report.markdown(with_pypy)
    budget = markdown.split("Proxy overhead by CPU")[1].split("##")[0]
    assert budget.count("\n| ") == 3, budget  # the header and a row per stack
    assert "| pypy_proxied |" in budget


def test_an_error_of_a_pypy_load_run_fails_the_errors_target(with_pypy: dict[str, Any]) -> None:
    cell = next(iter(with_pypy["load"]["pypy_proxied"].values()))
    cell["runs"][0]["non_2xx"] = 4
    target = judged(with_pypy, "no_errors")
    assert not target["pass"] and target["measured"].startswith("4 non-2xx"), target


def test_a_failed_api_redeploy_fails_its_target(committed: dict[str, Any]) -> None:
    results = copy.deepcopy(committed)
    results["redeploys"]["config_change"]["failed"] = 3
    redeploys = judged(results, "redeploys")
    assert not redeploys["pass"] and "config change (apiWorkers 1 -> 2): 3" in redeploys["measured"]


def test_a_failed_pypy_redeploy_fails_the_redeploy_target(committed: dict[str, Any]) -> None:
    results = copy.deepcopy(committed)
    pypy = copy.deepcopy(results["redeploys"]["app_change"])
    results["redeploys"]["pypy_app_change"] = pypy | {"title": "PyPy", "failed": 1}
    redeploys = judged(results, "redeploys")
    assert not redeploys["pass"] and "PyPy: 1" in redeploys["measured"], redeploys


def test_a_proxy_redeploy_is_left_out_of_the_redeploy_target(committed: dict[str, Any]) -> None:
    results = copy.deepcopy(committed)
    for key, redeploy in results["redeploys"].items():
        redeploy["failed"] = 5 if key == "proxy_change" else 0
    redeploys = judged(results, "redeploys")
    assert redeploys["pass"] and "proxy change" not in redeploys["measured"]


def test_own_cpu_leaves_out_the_engine_and_the_rest_of_the_host() -> None:
    per_request = {"proxy": 80.0, "api-1": 150.0, "api-2": 150.0, "wrk": 40.0, "engine": 10.0}
    assert report.own_us(per_request | {"other": 5, "machine": 440}) == 420
    assert report.parts(per_request)["api"] == 300


def test_the_layer_evidence_needs_every_layer_up_to_the_dependency_layer(
    with_pypy: dict[str, Any],
) -> None:
    evidence = with_pypy["images"]["api"]["layer_reuse"]
    evidence |= {"dependency_position": 3, "leading_layers_shared": 5, "reused": True}
    assert judged(with_pypy, "layer_reuse")["pass"]
    evidence |= {"leading_layers_shared": 2, "reused": False}
    assert not judged(with_pypy, "layer_reuse")["pass"]


class FakeImage:
    def __init__(self, layers: list[str], history: list[tuple[str, int]]) -> None:
        self.attrs = {"RootFS": {"Layers": layers}}
        # `docker history`: newest first
        self._history = [{"CreatedBy": step, "Size": size} for step, size in reversed(history)]

    def history(self) -> list[dict[str, Any]]:
        return self._history


BASE_HISTORY = [("/bin/sh -c #(nop) ADD file:4d5 in /", 80_000_000), ("CMD [bash]", 0)]
STAGE = [
    ("LABEL org.opencontainers.image.title=rest-api", 0),
    ("ENV PATH=/opt/venv/bin:/usr/bin", 0),
    ("RUN /bin/sh -c groupadd --system api # buildkit", 4_000),
    ("COPY /opt/venv /opt/venv # buildkit", 18_920_000),
    ("WORKDIR /app", 0),  # a layer: Docker's diff size leaves directories out
    ("COPY gunicorn.conf.py healthcheck.py wsgi.py ./ # buildkit", 9_000),
    ("COPY rest_api ./rest_api # buildkit", 12_000),
    ("RUN /bin/sh -c python -m compileall -q /app # buildkit", 30_000),
    ("USER 10001:10001", 0),
]


@pytest.mark.parametrize(("changed_from", "reused"), [(5, True), (2, False)])
def test_the_layer_evidence_finds_the_dependency_layer_among_the_digests(
    changed_from: int, reused: bool
) -> None:
    """Base layer, then groupadd, venv, WORKDIR, conf, app, compileall: an app change rebuilds
    the last two; a dependency change the venv and all above it."""
    before = [f"sha256:{i}" for i in range(7)]
    after = before[:changed_from] + [f"sha256:new{i}" for i in range(changed_from, 7)]
    images = {
        "base": FakeImage(before[:1], BASE_HISTORY),
        "cold": FakeImage(before, BASE_HISTORY + STAGE),
        "change": FakeImage(after, BASE_HISTORY + STAGE),
    }
    client: Any = type("Client", (), {"images": type("Images", (), {"get": images.get})})()
    evidence = deploys.layer_reuse(client, "cold", "change", "base")
    assert (evidence["dependency_position"], evidence["reused"]) == (3, reused)
    assert evidence["dependency_layer_after"]["size_mb"] == 18.92
    assert len(evidence["steps_rebuilt"]) == 7 - changed_from
    assert evidence["steps_rebuilt"][-1].startswith("RUN /bin/sh -c python -m compileall")
