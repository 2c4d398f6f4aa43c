"""What results.json's measurements add up to (the ratios and targets of scenarios.toml, the CPU
bound each scenario's cost per request implies, the proxy's CPU budget, the errors over every
load run), and results.md from it by the template report.md.j2."""

import re
from pathlib import Path
from typing import Any, Final

import jinja2

from bench.config import TABLES
from bench.load import errors

TEMPLATE: Final = Path(__file__).resolve().parent / "report.md.j2"


def num(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}f}"


def short_id(image_id: str) -> str:
    """A layer's short id; BuildKit's history gives none ("<missing>")."""
    return image_id[7:19] if image_id.startswith("sha256:") else "no id"


def parts(per_request: dict[str, float]) -> dict[str, float]:
    """CPU µs per request grouped: every api-N container counts as api."""
    grouped: dict[str, float] = {}
    for key, value in per_request.items():
        part = "api" if key.startswith("api") else key
        grouped[part] = grouped.get(part, 0.0) + value
    return grouped


def time_wait_per_request(cell: dict[str, Any]) -> float:
    """TIME_WAIT sockets left in the client's namespace per request, over a cell's runs
    (warm-up included; they all fall within TIME_WAIT's 60 s)."""
    requests = sum(run["requests"] for run in [cell["warmup"], *cell["runs"]])
    return float(cell["runs"][-1]["time_wait_after"] / requests) if requests else 0.0


def cells(values: dict[str, float], keys: list[str], digits: int) -> list[str]:
    """values[key] formatted for each key, or "-" where there is none."""
    return [num(values[key], digits) if key in values else "-" for key in keys]


def step(created_by: str) -> str:
    """A history entry's command without the shell prefix, with short content hashes."""
    text = created_by.replace("/bin/sh -c #(nop) ", "").strip()
    return re.sub(r"(dir|file):([0-9a-f]{12})[0-9a-f]+", r"\1:\2", text)


ENVIRONMENT: Final = jinja2.Environment(
    autoescape=jinja2.select_autoescape(default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
ENVIRONMENT.filters |= {
    "num": num,
    "short_id": short_id,
    "layer": lambda i: f"`{short_id(i)}`" if i.startswith("sha256:") else short_id(i),
    "parts": parts,
    "time_wait_per_request": time_wait_per_request,
    "errors": errors,
    "step": step,
    "each": lambda values, pattern: [pattern.format(value) for value in values],
}
ENVIRONMENT.globals |= {"zip": zip, "cells": cells}
ENVIRONMENT.tests["as_meant"] = lambda r: (
    r["failed"] == 0 and r["deploy_failed"] == r["expected_to_fail"]
)


def evaluate(results: dict[str, Any]) -> None:
    """Adds ratios, errors, CPU bounds, the proxy's CPU budget and the targets to results."""
    top = str(max(results["meta"]["timing"]["concurrencies"]))
    load, cores = results["load"], results["meta"]["host"]["cores"]
    results["ratios"] = ratios = {}
    for ratio in TABLES["ratio"]:
        figure = ratio.get("figure", "rps")
        above, below = (
            {c: x["median"][figure] for c, x in load[ratio[k]].items()} for k in ("top", "bottom")
        )
        ratios[ratio["key"]] = {
            c: round(v / below[c], 3) if below[c] else 0.0 for c, v in above.items() if c in below
        }
    cells = [cell for by_c in load.values() for cell in by_c.values()] + results["setups"]["setups"]
    runs = [run for cell in cells for run in [*cell["runs"], cell["warmup"]]]
    runs += [segment for series in results["sustained"]["series"].values() for segment in series]
    results["errors"] = {
        "load_runs": len(runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(sum(run["socket_errors"].values()) for run in runs),
    }
    # CPU µs per request of a scenario's own processes (its containers and wrk), and what the
    # machine's cores could serve at that cost if nothing else ran. The engine's share
    # (shipping logs, relaying a published port) is left out: it also serves whatever else
    # uses Docker meanwhile, so the bound is generous.
    results["cpu_bounds"] = bounds = {}
    for key, by_c in [(key, by_c) for key, by_c in load.items() if top in by_c]:
        per_request = by_c[top]["median"]["cpu_us_per_request"]
        own = sum(v for k, v in per_request.items() if k not in {"machine", "other", "engine"})
        bound = round(cores * 1e6 / own, 0) if own else 0.0
        bounds[key] = {"own_cpu_us_per_request": round(own, 1), "cpu_bound_rps": bound}
    # With the proxy on the API's cores, proxied / direct is about direct's CPU per request /
    # proxied's: the target leaves a proxied request direct's cost / the target in all.
    direct, proxied = (bounds[k]["own_cpu_us_per_request"] for k in ("direct", "proxied"))
    target = next(t["limit"] for t in TABLES["target"] if t["key"] == "proxy_overhead")
    results["proxy_budget"] = {
        "direct_us": direct,
        "proxied_us": proxied,
        "by_cpu": direct / proxied if proxied else 0.0,
        "measured": ratios["proxied_over_direct"][top],
        "target": target,
        "budget_us": direct / target,
    }
    api_redeploys = [r["key"] for r in TABLES["redeploy"] if r.get("api", True)]
    context = results | {
        "top": top,
        "layer_reuse": {
            "image build": results["images"]["api"]["layer_reuse"],
            "deploy": results["deploys"]["app_change"]["layer_reuse"],
        },
        "api_redeploys": [
            results["redeploys"][k] for k in api_redeploys if k in results["redeploys"]
        ],
    }
    results["targets"] = []
    for row in TABLES["target"]:
        values = context | {"limit": row.get("limit")}
        texts = (
            ENVIRONMENT.from_string(row[k]).render(values) for k in ("name", "wanted", "measured")
        )
        name, wanted, measured = texts
        met = bool(ENVIRONMENT.compile_expression(row["met"], undefined_to_none=False)(values))
        results["targets"].append(
            {"name": name, "target": wanted, "measured": measured, "pass": met}
        )


def markdown(results: dict[str, Any]) -> str:
    template = ENVIRONMENT.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(results=results, ratios=TABLES["ratio"])
