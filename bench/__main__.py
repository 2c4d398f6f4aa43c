"""`python -m bench [--quick] [--out DIR]`: deploy, measure, remove, write the results.

Full run (`make bench`): about 13 minutes, results in bench/results/. `--quick`: a second of
load per figure and one run each, to prove the benchmark works (CI); it writes to --out (by
default a new temporary folder), never to bench/results/.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

import contract
from bench import engine, images, load, redeploys, report, scenarios, servers, verdict, wrk
from bench.config import FULL, QUICK, RESULTS_DIR, Run, base_images
from bench.deploys import BenchStack, Deploy, copy_repository, stack_config
from bench.notes import METHOD, analysis, notes
from engine_harness.free_resources import free_subnet


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    parser.add_argument("--out", type=Path, help="results folder (default: bench/results/)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="DIR",
        help="measure nothing: write DIR's results.md and chart.png again from its results.json",
    )
    return parser.parse_args(argv)


def check_base_images(client: docker.DockerClient, names: dict[str, str]) -> None:
    for name in names.values():
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound:
            raise wrk.BenchError(f"base image {name} is missing: run `make base-images`") from None


@contextlib.contextmanager
def phase(results: dict[str, Any], name: str, what: str) -> Iterator[None]:
    """Logs a phase and records its seconds in results["meta"]["phases"]."""
    load.log(what)
    started = time.monotonic()
    try:
        yield
    finally:
        phases = results["meta"].setdefault("phases_s", {})
        phases[name] = round(time.monotonic() - started, 1)


def measure_everything(
    client: docker.DockerClient, run: Run, workdir: Path, results: dict[str, Any]
) -> None:
    """Every section, in an order where each one's servers are up only while it runs."""
    bases = base_images()
    with phase(results, "images", "images: cold builds (no cache), rebuild after an app change"):
        results["images"] = images.measure(client, run, bases, workdir / "images")

    root = copy_repository(workdir / "repo")
    stack = BenchStack(run, root, stack_config(bases, free_subnet(client)))
    deploys: dict[str, Any] = {}
    results["deploys"] = deploys
    try:
        with phase(results, "deploys", f"deploy: stack {run.stack}, cold, then with no change"):
            cold = stack.up()
            deploys["cold"] = cold.to_dict()
            deploys["no_change"] = stack.up().to_dict()
        exports = cold.exports

        network = engine.create_network(client, run, "net").name
        with phase(results, "load", "load: every scenario at every concurrency"):
            baseline = servers.start_baseline(
                client, run, network, exports[contract.EXPORT_API_IMAGE], bases["proxy"]
            )
            ceiling = servers.start_ceiling(client, run, network, bases["proxy"])
            capacity = scenarios.start_api_at_capacity(
                client, run, scenarios.stack_containers(client, exports)[1]
            )
            engine.wait_ready(*baseline.values(), ceiling, capacity)
            matrix = scenarios.stack_scenarios(client, exports, capacity, baseline, ceiling)
            results["scenarios"] = {s.key: {"title": s.title, "how": s.how} for s in matrix}
            results["load"] = load.measure(
                matrix,
                run.timing.concurrencies,
                run.timing,
                seconds=run.timing.duration_s,
                runs=run.timing.runs,
            )
            for container in [*baseline.values(), ceiling, capacity]:
                container.remove(force=True)

        with phase(results, "setups", "setups: API and proxy settings, through the proxy"):
            results["setups"] = scenarios.measure_setups(client, run, exports, run.timing)

        with phase(results, "sustained", "sustained load through the proxy"):
            results["sustained"] = scenarios.measure_sustained(client, run, exports, run.timing)

        with phase(results, "redeploys", "redeploys under a steady stream of requests"):
            # Taken now: once the stack's tag moves on, the old image may go at any time.
            before = images.layers(client, exports[contract.EXPORT_API_IMAGE])
            app_change_layers: list[images.Layers] = []

            def keep_app_change_layers(key: str, deploy: Deploy) -> None:
                if key == "app_change":
                    image = deploy.exports[contract.EXPORT_API_IMAGE]
                    app_change_layers.append(images.layers(client, image))

            results["redeploys"], done = redeploys.measure(
                stack, cold.exports[contract.EXPORT_URL], run.quick, keep_app_change_layers
            )
            changed = done["app_change"]
            (after,) = app_change_layers
        deploys["app_change"] = {
            **changed.to_dict(),
            "layer_reuse": images.layer_reuse(before, after),
        }
    finally:
        engine.remove_objects(client, run.run_id)
        stack.down()
        for tag in engine.bench_image_tags(client, run.stack):
            # The changed API image's own layers go; the rest stays as build cache.
            engine.remove_image(client, tag, prune="-api:" in tag and "app_change" in deploys)


def meta(run: Run, client: docker.DockerClient, wrk_version: str) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": run.quick,
        "run_id": run.run_id,
        "stack": run.stack,
        "timing": {
            "duration_s": run.timing.duration_s,
            "warmup_s": run.timing.warmup_s,
            "runs": run.timing.runs,
            "concurrencies": list(run.timing.concurrencies),
            "sweep_duration_s": run.timing.sweep_duration_s,
            "sweep_runs": run.timing.sweep_runs,
            "sustained_s": run.timing.sustained_s,
            "sustained_segments": run.timing.sustained_segments,
            "wrk_threads": {str(c): wrk.threads_for(c) for c in run.timing.concurrencies},
        },
        "host": {
            "cores": os.cpu_count() or 1,
            "kernel": platform.release(),
            "docker": client.version().get("Version", "?"),
            "wrk": wrk_version,
            "loadavg_start": round(os.getloadavg()[0], 2),
        },
        "method": METHOD,
    }


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write(results: dict[str, Any], out: Path) -> None:
    """results.json first: a report that fails to render loses no measurement."""
    out.mkdir(parents=True, exist_ok=True)
    _replace(out / "results.json", json.dumps(results, indent=2) + "\n")
    _replace(out / "results.md", report.markdown(results))
    report.chart(results, out / "chart.png")


def conclude(results: dict[str, Any], out: Path) -> None:
    """The derived sections (ratios, targets, prose), then the three files."""
    timing = results["meta"]["timing"]
    verdict.evaluate(results, list(timing["concurrencies"]), results["meta"]["host"]["cores"])
    results["analysis"] = analysis(results)
    results["notes"] = notes(results)
    write(results, out)
    for target in results["targets"]:
        mark = "PASS" if target["pass"] else "FAIL"
        print(f"{mark}  {target['name']}: {target['measured']} (wanted {target['target']})")
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        conclude(json.loads((args.render / "results.json").read_text()), args.render)
        return 0
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else RESULTS_DIR)
    run = Run(QUICK if args.quick else FULL, out.resolve(), args.quick)
    started = time.monotonic()
    try:
        wrk_version = wrk.ensure_tools()
        client = engine.connect()
        check_base_images(client, base_images())
        left = engine.remove_objects(client)
        if left:
            load.log(f"removed what earlier runs left: {left}")
        results: dict[str, Any] = {"meta": meta(run, client, wrk_version)}
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            measure_everything(client, run, Path(workdir), results)
    except (wrk.BenchError, docker.errors.DockerException) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        if "results" in locals():
            partial = Path(tempfile.mkdtemp(prefix="bench-partial-")) / "results.json"
            partial.write_text(json.dumps(results, indent=2))
            print(f"bench: what was measured before the error: {partial}", file=sys.stderr)
        return 1
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    results["meta"]["host"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    conclude(results, run.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
