"""The ratios, errors and targets results.json adds up to; results.md from report.md.j2."""

from pathlib import Path
from typing import Any, Final

import jinja2

from bench.config import rows

TEMPLATE: Final = Path(__file__).resolve().parent / "report.md.j2"
RATIOS: Final = rows("ratio", "key", "title", "top", "bottom")
TARGETS: Final = rows("target", "key", "name", "wanted", "measured", "met")
API_REDEPLOYS: Final = [r["key"] for r in rows("redeploy", "key", "title") if r["api"]]


def num(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}f}"


def parts(per_request: dict[str, float]) -> dict[str, float]:
    """CPU µs per request grouped: every api-N container counts as api."""
    grouped: dict[str, float] = {}
    for key, value in per_request.items():
        part = "api" if key.startswith("api") else key
        grouped[part] = grouped.get(part, 0.0) + value
    return grouped


def own_us(per_request: dict[str, float]) -> float:
    """CPU µs per request of a scenario's own processes: its containers and wrk."""
    return sum(v for k, v in per_request.items() if k not in {"machine", "other", "engine"})


ENVIRONMENT: Final = jinja2.Environment(
    autoescape=jinja2.select_autoescape(default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
ENVIRONMENT.filters |= {
    "num": num,
    "parts": parts,
    "errors": lambda run: run["non_2xx"] + sum(run["socket_errors"].values()),
    "own_us": own_us,
    "each": lambda values, pattern: [pattern.format(value) for value in values],
}
# values[key] formatted for each key, or "-" where there is none
ENVIRONMENT.globals["cells"] = lambda values, keys, digits: [
    num(values[key], digits) if key in values else "-" for key in keys
]
# A redeploy as meant: no request failed, and its deploy failed only if it was meant to.
ENVIRONMENT.tests["as_meant"] = lambda r: (
    not r["failed"] and r["deploy_failed"] == r["expected_to_fail"]
)


def evaluate(results: dict[str, Any]) -> None:
    """Adds the ratios, the errors over every load run and the targets to results."""
    top = str(max(results["meta"]["timing"]["concurrencies"]))
    load = results["load"]
    results["ratios"] = ratios = {}
    for ratio in [r for r in RATIOS if {r["top"], r["bottom"]} <= set(load)]:
        above, below = (
            {c: x["median"][ratio["figure"]] for c, x in load[ratio[k]].items()}
            for k in ("top", "bottom")
        )
        ratios[ratio["key"]] = {c: round(v / below[c], 3) for c, v in above.items() if below.get(c)}
    measured = [c for by_c in load.values() for c in by_c.values()] + results["setups"]["setups"]
    runs = [run for cell in measured for run in [*cell["runs"], *cell["warmups"]]]
    runs += [segment for series in results["sustained"]["series"].values() for segment in series]
    results["errors"] = {
        "load_runs": len(runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(sum(run["socket_errors"].values()) for run in runs),
    }
    redeploys = [results["redeploys"][k] for k in API_REDEPLOYS if k in results["redeploys"]]
    context = results | {"top": top, "api_redeploys": redeploys}
    results["targets"] = [judge(row, context | {"limit": row["limit"]}) for row in TARGETS]


def judge(row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A target of scenarios.toml over results.json; not measured where a figure is missing."""
    name, wanted = (ENVIRONMENT.from_string(row[k]).render(values) for k in ("name", "wanted"))
    try:
        measured = ENVIRONMENT.from_string(row["measured"]).render(values)
        met = bool(ENVIRONMENT.compile_expression(row["met"], undefined_to_none=False)(values))
    except jinja2.UndefinedError:
        measured, met = "not measured", False
    return {"name": name, "target": wanted, "measured": measured, "pass": met}


def markdown(results: dict[str, Any]) -> str:
    template = ENVIRONMENT.from_string(TEMPLATE.read_text(encoding="utf-8"))
    budget = next(t["limit"] for t in TARGETS if t["key"] == "proxy_overhead")
    return template.render(results=results, ratios=RATIOS, budget=budget)
