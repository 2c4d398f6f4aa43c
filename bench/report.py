"""results.md (tables of every figure, ratio and target) and chart.png from results.json."""

import re
from pathlib import Path
from typing import Any

import matplotlib

from bench.notes import time_wait_per_request

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCENARIO_ORDER = (
    "proxied",
    "published",
    "direct",
    "direct_one",
    "baseline",
    "baseline_api",
    "ceiling",
)
CPU_PARTS = ("proxy", "nginx", "api", "engine", "wrk", "other")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_by_part(per_request: dict[str, float]) -> dict[str, float]:
    """CPU µs per request grouped: every api-N container counts as api."""
    parts: dict[str, float] = {}
    for key, value in per_request.items():
        part = "api" if key.startswith("api") else key
        parts[part] = parts.get(part, 0.0) + value
    return parts


def _load_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key in SCENARIO_ORDER:
        scenario = results["load"][key]
        for c, cell in scenario.items():
            m = cell["median"]
            rows.append(
                [
                    results["scenarios"][key]["title"],
                    c,
                    f"{m['rps']:.0f}",
                    f"{m['rps_spread'][0]:.0f}-{m['rps_spread'][1]:.0f}",
                    f"{m['p50_ms']:.2f}",
                    f"{m['p99_ms']:.2f}",
                    str(max(run["time_wait_after"] for run in cell["runs"])),
                    f"{m['non_2xx']} / {m['socket_errors']}",
                ]
            )
    return rows


def _cpu_rows(results: dict[str, Any], top: str) -> list[list[str]]:
    rows = []
    for key in SCENARIO_ORDER:
        m = results["load"][key][top]["median"]
        parts = _cpu_by_part(m["cpu_us_per_request"])
        bound = results["cpu_bounds"][key]
        rows.append(
            [
                results["scenarios"][key]["title"],
                f"{m['rps']:.0f}",
                *[f"{parts[p]:.0f}" if p in parts else "-" for p in CPU_PARTS],
                f"{bound['own_cpu_us_per_request']:.0f}",
                f"{bound['cpu_bound_rps']:.0f}",
                f"{m['cpu_cores']['machine']:.2f}",
            ]
        )
    return rows


def _setup_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for setup in results["setups"]["setups"]:
        m = setup["median"]
        parts = _cpu_by_part(m["cpu_us_per_request"])
        rows.append(
            [
                setup["title"],
                f"{m['rps']:.0f}",
                f"{m['p50_ms']:.1f}",
                f"{m['p99_ms']:.1f}",
                f"{parts.get('proxy', 0):.0f}",
                f"{parts.get('api', 0):.0f}",
                f"{parts.get('engine', 0):.0f}",
                f"{time_wait_per_request(setup):.2f}",
                f"{m['non_2xx']} / {m['socket_errors']}",
            ]
        )
    return rows


def _sustained_rows(results: dict[str, Any]) -> list[list[str]]:
    series = results["sustained"]["series"]
    rows = []
    for index, (stack, reuse) in enumerate(zip(series["stack"], series["compare"], strict=True), 1):
        errors = [s["non_2xx"] + sum(s["socket_errors"].values()) for s in (stack, reuse)]
        rows.append(
            [
                str(index),
                *[
                    value
                    for s in (stack, reuse)
                    for value in (
                        f"{s['rps']:.0f}",
                        f"{s['cpu_us_per_request'].get('proxy', 0):.0f}",
                        str(s["time_wait_after"]),
                    )
                ],
                f"{errors[0]} / {errors[1]}",
            ]
        )
    return rows


def _ratio_rows(results: dict[str, Any], concurrencies: list[str]) -> list[list[str]]:
    names = {
        "ours_over_baseline": "ours / original post (req/s)",
        "ours_over_baseline_api": "ours / original post's gunicorn alone (req/s)",
        "proxied_over_direct": "proxied / direct at the same API capacity (req/s)",
        "p99_proxied_over_direct": "proxied / direct at the same API capacity (p99 latency)",
        "proxied_over_direct_one": "proxied / one API container direct (req/s)",
        "ours_over_ceiling": "ours / nginx ceiling (req/s)",
        "published_over_proxied": "published port / proxy namespace (req/s)",
    }
    return [
        [title, *[f"{results['ratios'][key][c]:.2f}" for c in concurrencies]]
        for key, title in names.items()
    ]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    timing = meta["timing"]
    concurrencies = [str(c) for c in timing["concurrencies"]]
    top = concurrencies[-1]
    images, deploys = results["images"], results["deploys"]
    passed = sum(t["pass"] for t in results["targets"])
    parts = [
        "# Benchmark results",
        "",
        f"{'Quick run (CI smoke, not for comparison)' if meta['quick'] else 'Full run'} of"
        f" `python -m bench` on {meta['started']} ({meta['elapsed_s'] / 60:.1f} min):"
        f" {meta['host']['cores']} cores, kernel {meta['host']['kernel']}, Docker"
        f" {meta['host']['docker']}, {meta['host']['wrk']}. Load average at start"
        f" {meta['host']['loadavg_start']}, at end {meta['host']['loadavg_end']}.",
        "",
        f"Each figure is the median of {timing['runs']} runs of {timing['duration_s']} s after a"
        f" {timing['warmup_s']} s warm-up that is not counted (sweeps: {timing['sweep_runs']} runs"
        f" of {timing['sweep_duration_s']} s). {meta['method']}",
        "",
        f"## Targets: {passed} of {len(results['targets'])} met",
        "",
        table(
            ["target", "wanted", "measured", "result"],
            [
                [t["name"], t["target"], t["measured"], "PASS" if t["pass"] else "**FAIL**"]
                for t in results["targets"]
            ],
        ),
        "",
        "## Throughput and latency",
        "",
        table(
            [
                "scenario",
                "connections",
                "req/s",
                "req/s range",
                "p50 ms",
                "p99 ms",
                "TIME_WAIT",
                "non-2xx / socket errors",
            ],
            _load_rows(results),
        ),
        "",
        "TIME_WAIT: the most sockets in TIME_WAIT in wrk's network namespace after a run (the"
        " proxy's own, for the proxied scenarios: its closed upstream connections; see"
        " *Sustained load* for what they cost).",
        "",
        "Scenarios:",
        "",
        *[
            f"- **{results['scenarios'][k]['title']}**: {results['scenarios'][k]['how']}."
            for k in SCENARIO_ORDER
        ],
        "",
        "## Ratios",
        "",
        table(["ratio", *[f"c={c}" for c in concurrencies]], _ratio_rows(results, concurrencies)),
        "",
        f"## Where the CPU goes, c={top}",
        "",
        "CPU microseconds per request of each part (containers: their cgroups' CPU accounting;"
        " engine = dockerd, containerd, shims and docker-proxy, which ship the"
        " containers' logs and relay the published port; other = the rest of the host meanwhile)."
        " *Own* is the scenario's containers and wrk (not the engine, which also serves anything"
        " else using Docker meanwhile); *bound* is what the machine's cores could serve at that"
        " cost per request if nothing else ran.",
        "",
        table(
            [
                "scenario",
                "req/s",
                *[f"{p} µs" for p in CPU_PARTS],
                "own µs/req",
                "bound req/s",
                "busy cores",
            ],
            _cpu_rows(results, top),
        ),
        "",
        *results["analysis"],
        "",
        f"## Settings compared through the proxy, c={results['setups']['concurrency']}",
        "",
        "The stack as deployed (its API containers behind a fresh proxy container of the same"
        " image and config), and the same with one change each: API settings run new API"
        " containers (as many as the stack's, same image, limits and hardening) behind their own"
        " proxy; proxy settings change one thing in proxy/nginx.conf. The setups take turns run"
        " by run. TIME_WAIT / request: sockets left in TIME_WAIT in the proxy's network"
        " namespace per request served (connections closed after use).",
        "",
        table(
            [
                "setup",
                "req/s",
                "p50 ms",
                "p99 ms",
                "proxy µs/req",
                "API µs/req",
                "engine µs/req",
                "TIME_WAIT / request",
                "non-2xx / socket errors",
            ],
            _setup_rows(results),
        ),
        "",
        f"## Sustained load through the proxy, c={results['sustained']['concurrency']}",
        "",
        f"Consecutive runs of {results['sustained']['segment_s']} s without a pause: first the"
        " stack's proxy as deployed"
        f" (`net.ipv4.tcp_tw_reuse={results['sustained']['tw_reuse']['stack']}`), then the same"
        " proxy image in front of the same API containers with"
        f" `net.ipv4.tcp_tw_reuse={results['sustained']['tw_reuse']['compare']}` (1: source"
        " ports in TIME_WAIT are reused for new outgoing connections; 2, the kernel's default:"
        " only on loopback). Every upstream connection that nginx closes first keeps its source"
        f" port in TIME_WAIT for 60 s; nginx has {results['sustained']['source_ports']} source"
        " ports towards the two API containers.",
        "",
        table(
            [
                "segment",
                f"stack proxy (reuse={results['sustained']['tw_reuse']['stack']}) req/s",
                "proxy µs/req",
                "TIME_WAIT",
                f"same proxy, reuse={results['sustained']['tw_reuse']['compare']}: req/s",
                "proxy µs/req",
                "TIME_WAIT",
                "errors (stack / other)",
            ],
            _sustained_rows(results),
        ),
        "",
        "## Images",
        "",
        table(
            [
                "image",
                "base",
                "size MB",
                "over base MB",
                "cold build s (no cache)",
                "after app change s",
            ],
            [
                [
                    role,
                    f"`{images[role]['base_image']}`",
                    f"{images[role]['size_mb']:.1f}",
                    f"{images[role]['over_base_mb']:.2f}",
                    f"{images[role]['cold_build_s']:.1f}",
                    f"{images[role].get('app_change_build_s', 0):.1f}" if role == "api" else "-",
                ]
                for role in ("api", "proxy")
            ],
        ),
        "",
        _layer_note(images["api"]),
        "",
        "## Deploys through the engine harness",
        "",
        table(
            ["deploy", "seconds", "created", "replaced or rebuilt", "unchanged"],
            [
                [
                    name,
                    f"{deploys[key]['seconds']:.1f}",
                    ", ".join(deploys[key]["created"]) or "-",
                    ", ".join([*deploys[key]["replaced"], *deploys[key].get("updated", [])]) or "-",
                    str(len(deploys[key]["unchanged"])),
                ]
                for key, name in (
                    ("cold", "cold (new stack)"),
                    ("no_change", "again, no change"),
                    ("app_change", "after an app-code change"),
                )
            ],
        ),
        "",
        _layer_note(deploys["app_change"], "deploy"),
        "",
        "## Redeploys under a steady stream of requests",
        "",
        "Three clients with kept-alive connections and one opening a connection per request send"
        " GETs through the proxy without pause, from before each deploy until 200 more were"
        " answered after it returned (`bench/redeploys.py`). A failed request is an error or a"
        " non-200 answer, or one that took 2 s or more.",
        "",
        table(
            [
                "redeploy",
                "deploy s",
                "deploy result",
                "requests",
                "failed",
                "slowest s",
                "longest with no answer s",
            ],
            [
                [
                    figures["title"],
                    f"{figures['seconds']:.1f}",
                    "failed (as meant)"
                    if figures["deploy_failed"] and figures["expected_to_fail"]
                    else ("FAILED" if figures["deploy_failed"] else "ok"),
                    str(figures["requests"]),
                    str(figures["failed"]),
                    f"{figures['slowest_s']:.3f}",
                    f"{figures['no_answer_s']:.2f}",
                ]
                for figures in results.get("redeploys", {}).values()
            ],
        ),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in results["notes"]],
        "",
    ]
    return "\n".join(parts)


def _short(created_by: str) -> str:
    """A history entry's command without the shell prefix and with short content hashes."""
    text = created_by.replace("/bin/sh -c #(nop) ", "").strip()
    return re.sub(r"(dir|file):([0-9a-f]{12})[0-9a-f]+", r"\1:\2", text)


def _layer_note(section: dict[str, Any], what: str = "image build") -> str:
    evidence = section["layer_reuse"]
    before, after = evidence["dependency_layer_before"], evidence["dependency_layer_after"]
    note = (
        f"Dependency layer, {what}: `{_short(after['created_by'])}` ({after['size_mb']:.1f} MB)"
        f" is layer `{before['id'][7:19]}` before the app change and `{after['id'][7:19]}`"
        f" after: {'reused' if evidence['reused'] else '**rebuilt**'};"
        f" {evidence['leading_layers_shared']} of {evidence['layers_after']} layers (bottom up)"
        " have the same content digest."
    )
    if "app_change_steps_rebuilt" in section:
        rebuilt = ", ".join(f"`{step}`" for step in section["app_change_steps_rebuilt"])
        note += f" Layer steps rebuilt: {rebuilt}; every other layer step came from the cache."
    return note


def chart(results: dict[str, Any], path: Path) -> None:
    concurrencies = [str(c) for c in results["meta"]["timing"]["concurrencies"]]
    figure, ((throughput, latency), (compared, sustained)) = plt.subplots(2, 2, figsize=(16, 10))
    width = 0.8 / len(SCENARIO_ORDER)
    for index, key in enumerate(SCENARIO_ORDER):
        cells = results["load"][key]
        xs = [
            i + (index - (len(SCENARIO_ORDER) - 1) / 2) * width for i in range(len(concurrencies))
        ]
        title = results["scenarios"][key]["title"]
        throughput.bar(xs, [cells[c]["median"]["rps"] for c in concurrencies], width, label=title)
        latency.bar(xs, [cells[c]["median"]["p99_ms"] for c in concurrencies], width, label=title)
    for axis, label in ((throughput, "requests/s (median)"), (latency, "p99 latency, ms (median)")):
        axis.set_xticks(range(len(concurrencies)), [f"{c} conn." for c in concurrencies])
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
    throughput.set_title("Throughput (log scale)")
    throughput.set_yscale("log")
    latency.set_title("p99 latency (log scale)")
    latency.set_yscale("log")
    throughput.legend(fontsize=8)
    setups = results["setups"]["setups"]
    ys = range(len(setups))
    compared.barh(list(ys), [setup["median"]["rps"] for setup in setups], 0.6)
    compared.set_yticks(list(ys), [setup["title"] for setup in setups], fontsize=8)
    compared.invert_yaxis()
    compared.set_xlabel("requests/s (median)")
    compared.set_title(f"Settings compared through the proxy, c={results['setups']['concurrency']}")
    compared.grid(axis="x", alpha=0.3)
    series = results["sustained"]["series"]
    seconds = results["sustained"]["segment_s"]
    reuse = results["sustained"]["tw_reuse"]
    for key, label in (
        ("stack", f"stack's proxy, tcp_tw_reuse={reuse['stack']}"),
        ("compare", f"same proxy, tcp_tw_reuse={reuse['compare']}"),
    ):
        xs = [seconds * i for i in range(1, len(series[key]) + 1)]
        sustained.plot(xs, [s["rps"] for s in series[key]], marker="o", label=label)
    sustained.set_xlabel("seconds of sustained load")
    sustained.set_ylabel("requests/s")
    sustained.set_ylim(bottom=0)
    sustained.set_title(
        f"Sustained load through the proxy, c={results['sustained']['concurrency']}"
    )
    sustained.legend(fontsize=8)
    sustained.grid(alpha=0.3)
    mode = "quick run" if results["meta"]["quick"] else "full run"
    figure.suptitle(f"pulumi-flask-rebar benchmark ({mode}, {results['meta']['started']})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
