"""The benchmark without an engine: its tables of scenarios.toml, the pure parts of a load run,
and results.md rendered from the committed results.json."""

import copy
import json
from typing import Any

import pytest

from bench import config, deploys, load, report, scenarios
from bench.config import RESULTS_DIR, TABLES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

# The groups of containers `Servers.systems` starts, by role.
SYSTEMS = {
    "stack": {"proxy", "api-1", "api-2"},
    "capacity": {"api"},
    "baseline": {"nginx", "api"},
    "ceiling": {"nginx"},
    "plain": {"proxy", "api-1", "api-2"},
}
SCENARIO_KEYS = [s["key"] for s in scenarios.SCENARIOS]


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    """The last full run's results.json, with what report.evaluate adds."""
    results = json.loads((RESULTS_DIR / "results.json").read_text())
    report.evaluate(results)
    return results


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=SCENARIO_KEYS)
def test_a_scenario_loads_a_container_of_its_system(scenario: dict[str, Any]) -> None:
    assert scenario["system"] in SYSTEMS, scenario["key"]
    if scenario["enter"] is None:
        assert scenario["system"] == "stack", f"{scenario['key']}: only the stack is published"
    else:
        assert scenario["enter"] in SYSTEMS[scenario["system"]], scenario["key"]
        assert scenario["port"] > 0, scenario["key"]
    assert scenario["how"].format(workers=2, apis=2), scenario["key"]


@pytest.mark.parametrize("ratio", TABLES["ratio"], ids=[r["key"] for r in TABLES["ratio"]])
def test_a_ratio_compares_two_scenarios_by_a_median(ratio: dict[str, Any]) -> None:
    assert {ratio["top"], ratio["bottom"]} <= set(SCENARIO_KEYS), ratio["key"]
    assert ratio.get("figure", "rps") in {"rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms"}


@pytest.mark.parametrize("setup", scenarios.SETUPS, ids=[s["key"] for s in scenarios.SETUPS])
def test_a_setup_changes_what_it_names(setup: dict[str, Any]) -> None:
    """Each replaced line is in proxy/nginx.conf once (nginx_conf raises otherwise)."""
    conf = scenarios.nginx_conf(setup)
    for old, new in setup["replacements"].items():
        assert old not in conf.replace(new, ""), f"{setup['key']}: {old!r}"
    if not setup["replacements"] and not setup["conf"]:
        assert conf == (REPO_ROOT / "proxy" / "nginx.conf").read_text(), setup["key"]


def test_the_first_setup_is_the_stack_as_deployed() -> None:
    first = scenarios.SETUPS[0]
    assert (first["api_environment"], first["replacements"], first["conf"]) == ({}, {}, None)


@pytest.mark.parametrize("redeploy", deploys.REDEPLOYS, ids=[r["key"] for r in deploys.REDEPLOYS])
def test_a_redeploy_changes_files_of_the_repository(redeploy: dict[str, Any]) -> None:
    for relative in [*redeploy["append"], *redeploy["restore"]]:
        assert (REPO_ROOT / relative).is_file(), f"{redeploy['key']}: {relative}"
    assert redeploy["append"] or redeploy["restore"] or redeploy["config"], redeploy["key"]


def test_quick_runs_keep_an_app_change_for_the_layer_evidence() -> None:
    assert any(r["key"] == "app_change" and r["quick"] for r in deploys.REDEPLOYS)


def test_a_row_with_an_unknown_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = copy.deepcopy(TABLES)
    tables["setup"].append({"key": "typo", "title": "t", "api_enviroment": {}})
    monkeypatch.setattr(config, "TABLES", tables)
    with pytest.raises(ValueError, match="api_enviroment"):
        config.rows("setup", ("key", "title"), api_environment={}, replacements={}, conf=None)


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


def test_the_published_scenario_loads_from_the_host() -> None:
    (published,) = [s for s in scenarios.SCENARIOS if s["enter"] is None]
    target = scenarios.target(published, {"proxy": None}, "http://127.0.0.1:8080")
    assert (target.url, target.netns_pid) == ("http://127.0.0.1:8080/", None)


def test_the_committed_report_is_rendered_from_the_committed_results(
    committed: dict[str, Any],
) -> None:
    """results.md is what the template makes of results.json: tables only, nothing by hand."""
    assert report.markdown(committed) == (RESULTS_DIR / "results.md").read_text()


def test_the_derived_sections_are_recomputed_as_committed(committed: dict[str, Any]) -> None:
    stored = json.loads((RESULTS_DIR / "results.json").read_text())
    for section in ("ratios", "errors", "cpu_bounds"):
        assert committed[section] == stored[section], section
    for mine, theirs in zip(committed["targets"], stored["targets"], strict=True):
        if mine["name"] != "dependency layer reused after an app-code change":
            assert mine == theirs, mine["name"]


def test_every_target_is_judged(committed: dict[str, Any]) -> None:
    names = [t["name"] for t in committed["targets"]]
    assert len(names) == len(TABLES["target"]) == len(set(names))
    assert all(isinstance(t["pass"], bool) and t["measured"] for t in committed["targets"])


def test_a_failed_api_redeploy_fails_its_target(committed: dict[str, Any]) -> None:
    results = copy.deepcopy(committed)
    results["redeploys"]["config_change"]["failed"] = 3
    report.evaluate(results)
    (redeploys,) = [t for t in results["targets"] if t["name"].startswith("redeploys of the API")]
    assert not redeploys["pass"] and "config change (apiWorkers 1 -> 2): 3" in redeploys["measured"]


def test_a_proxy_redeploy_is_left_out_of_the_redeploy_target(committed: dict[str, Any]) -> None:
    results = copy.deepcopy(committed)
    for key, redeploy in results["redeploys"].items():
        redeploy["failed"] = 5 if key == "proxy_change" else 0
    report.evaluate(results)
    (redeploys,) = [t for t in results["targets"] if t["name"].startswith("redeploys of the API")]
    assert redeploys["pass"] and "proxy change" not in redeploys["measured"]


def test_the_proxy_budget_follows_the_cpu_per_request(committed: dict[str, Any]) -> None:
    """Proxied / direct by CPU, and what the target leaves a proxied request in all."""
    budget, bounds = committed["proxy_budget"], committed["cpu_bounds"]
    direct, proxied = (bounds[k]["own_cpu_us_per_request"] for k in ("direct", "proxied"))
    assert budget["by_cpu"] == pytest.approx(direct / proxied)
    assert budget["budget_us"] * budget["target"] == pytest.approx(direct)


@pytest.mark.parametrize(
    ("image_id", "shown"), [("sha256:9f1ef273cb53fb8d7f23", "9f1ef273cb53"), ("<missing>", "no id")]
)
def test_a_layer_without_an_id_says_so(image_id: str, shown: str) -> None:
    assert report.short_id(image_id) == shown


def test_a_history_step_is_shown_short() -> None:
    step = "/bin/sh -c #(nop) COPY dir:0434ca663d74e22df3166a7bb in /opt/venv"
    assert report.step(step) == "COPY dir:0434ca663d74 in /opt/venv"


def test_time_wait_per_request_counts_the_warm_up() -> None:
    cell = {"warmup": {"requests": 100}, "runs": [{"requests": 100, "time_wait_after": 50}]}
    assert report.time_wait_per_request(cell) == 0.25
