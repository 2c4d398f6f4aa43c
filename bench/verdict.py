"""Ratios between the scenarios, the CPU bound implied by each one's cost per request, and
every target of the issue with its measured value and PASS or FAIL."""

from typing import Any, Final

# Targets of the issue, at the highest concurrency measured.
SPEEDUP_OVER_BASELINE: Final = 2.5
PROXIED_OVER_DIRECT: Final = 0.85
P99_PROXIED_OVER_DIRECT: Final = 2.0
API_OVER_BASE_MB: Final = 40.0
PROXY_OVER_BASE_MB: Final = 5.0


def _median(results: dict[str, Any], scenario: str, concurrency: int) -> dict[str, Any]:
    return dict(results["load"][scenario][str(concurrency)]["median"])


def ratios(results: dict[str, Any], concurrencies: list[int]) -> dict[str, dict[str, float]]:
    def ratio(top: str, bottom: str, key: str = "rps") -> dict[str, float]:
        values = {}
        for c in concurrencies:
            below = _median(results, bottom, c)[key]
            values[str(c)] = round(_median(results, top, c)[key] / below, 3) if below else 0.0
        return values

    return {
        "ours_over_baseline": ratio("proxied", "baseline"),
        "ours_over_baseline_api": ratio("proxied", "baseline_api"),
        "proxied_over_direct": ratio("proxied", "direct"),
        "p99_proxied_over_direct": ratio("proxied", "direct", "p99_ms"),
        "proxied_over_direct_one": ratio("proxied", "direct_one"),
        "ours_over_ceiling": ratio("proxied", "ceiling"),
        "published_over_proxied": ratio("published", "proxied"),
    }


def cpu_bound(median: dict[str, Any], cores: int) -> dict[str, float]:
    """CPU microseconds per request of the scenario's own processes (its containers and wrk),
    and the requests per second that `cores` could serve at that cost if nothing else ran.
    The engine's share (shipping the containers' logs, relaying a published port) is left
    out: it also holds whatever else uses Docker meanwhile, so the bound is generous."""
    per_request = median["cpu_us_per_request"]
    own = sum(v for k, v in per_request.items() if k not in {"machine", "other", "engine"})
    return {
        "own_cpu_us_per_request": round(own, 1),
        "cpu_bound_rps": round(cores * 1e6 / own, 0) if own else 0.0,
    }


def _total_errors(results: dict[str, Any]) -> dict[str, int]:
    """Non-2xx responses and socket errors over every load run, warm-ups included."""
    non_2xx = socket = runs = 0

    def add(cell: dict[str, Any]) -> None:
        nonlocal non_2xx, socket, runs
        for run in [*cell["runs"], cell["warmup"]]:
            non_2xx += run["non_2xx"]
            socket += sum(run["socket_errors"].values())
            runs += 1

    for by_concurrency in results["load"].values():
        for cell in by_concurrency.values():
            add(cell)
    for setup in results["setups"]["setups"]:
        add(setup)
    for segment in [s for series in results["sustained"]["series"].values() for s in series]:
        non_2xx += segment["non_2xx"]
        socket += sum(segment["socket_errors"].values())
        runs += 1
    return {"load_runs": runs, "non_2xx": non_2xx, "socket_errors": socket}


def _target(name: str, target: str, measured: str, passed: bool) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "pass": bool(passed)}


def targets(results: dict[str, Any], top: int) -> list[dict[str, Any]]:
    r = results["ratios"]
    c = str(top)
    errors = results["errors"]
    images, deploys = results["images"], results["deploys"]
    replaced_kinds = deploys["app_change"]["containers_replaced_kinds"]
    api_count = len(deploys["cold"]["api_containers"])
    serving = {k: v for k, v in results["redeploys"].items() if k != "proxy_change"}
    return [
        _target(
            f"throughput through the proxy vs the original post, c={top}",
            f">= {SPEEDUP_OVER_BASELINE}x",
            f"{r['ours_over_baseline'][c]:.2f}x",
            r["ours_over_baseline"][c] >= SPEEDUP_OVER_BASELINE,
        ),
        _target(
            f"proxy overhead: proxied / direct throughput (same API capacity), c={top}",
            f">= {PROXIED_OVER_DIRECT}",
            f"{r['proxied_over_direct'][c]:.2f}",
            r["proxied_over_direct"][c] >= PROXIED_OVER_DIRECT,
        ),
        _target(
            f"proxy overhead: proxied / direct p99 latency (same API capacity), c={top}",
            f"<= {P99_PROXIED_OVER_DIRECT}x",
            f"{r['p99_proxied_over_direct'][c]:.2f}x",
            r["p99_proxied_over_direct"][c] <= P99_PROXIED_OVER_DIRECT,
        ),
        _target(
            "no non-2xx response and no socket error in any load run",
            "0 in every run",
            f"{errors['non_2xx']} non-2xx, {errors['socket_errors']} socket errors"
            f" in {errors['load_runs']} runs",
            errors["non_2xx"] == 0 and errors["socket_errors"] == 0,
        ),
        _target(
            "API image size over its base image",
            f"<= {API_OVER_BASE_MB:.0f} MB",
            f"{images['api']['over_base_mb']:.1f} MB",
            images["api"]["over_base_mb"] <= API_OVER_BASE_MB,
        ),
        _target(
            "proxy image size over its base image",
            f"<= {PROXY_OVER_BASE_MB:.0f} MB",
            f"{images['proxy']['over_base_mb']:.2f} MB",
            images["proxy"]["over_base_mb"] <= PROXY_OVER_BASE_MB,
        ),
        _target(
            "redeploy with no change: containers replaced",
            "0",
            f"{deploys['no_change']['containers_replaced']} replaced,"
            f" {deploys['no_change']['containers_created']} created",
            deploys["no_change"]["containers_replaced"] == 0
            and deploys["no_change"]["containers_created"] == 0,
        ),
        _target(
            "redeploy after an app-code change: containers replaced",
            f"only the {api_count} API containers",
            ", ".join(replaced_kinds) or "none",
            replaced_kinds == ["container:api"] * api_count,
        ),
        _target(
            "dependency layer reused after an app-code change",
            "same layer id (docker history)",
            f"image build: {_reused(images['api']['layer_reuse'])};"
            f" deploy: {_reused(deploys['app_change']['layer_reuse'])}",
            images["api"]["layer_reuse"]["reused"]
            and deploys["app_change"]["layer_reuse"]["reused"],
        ),
        _target(
            "redeploys of the API (code, config, broken release, fix) under a steady stream:"
            " requests failed or slower than 2 s",
            "0, and the broken release's deploy fails",
            ", ".join(f"{v['title']}: {v['failed']}" for v in serving.values()),
            all(
                v["failed"] == 0 and v["deploy_failed"] == v["expected_to_fail"]
                for v in serving.values()
            ),
        ),
    ]


def _reused(evidence: dict[str, Any]) -> str:
    layer = evidence["dependency_layer_after"]["id"]
    return f"{'reused' if evidence['reused'] else 'REBUILT'} {layer[7:19]}"


def evaluate(results: dict[str, Any], concurrencies: list[int], cores: int) -> None:
    """Adds ratios, errors, CPU bounds and targets to results."""
    top = max(concurrencies)
    results["ratios"] = ratios(results, concurrencies)
    results["errors"] = _total_errors(results)
    results["cpu_bounds"] = {
        scenario: cpu_bound(_median(results, scenario, top), cores) for scenario in results["load"]
    }
    results["targets"] = targets(results, top)
