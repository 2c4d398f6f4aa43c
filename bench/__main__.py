"""`python -m bench [--quick] [--out DIR] [--render DIR]`: deploy, measure, remove, write results.

Full run (`make bench`): about 13 minutes, results in bench/results/. `--quick`: a second of
load per figure and one run each, to prove the benchmark works (CI); it writes to --out (by
default a new temporary folder), never to bench/results/. What is measured and how to read it:
bench/README.md.
"""

import argparse
import contextlib
import dataclasses
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
from bench import deploys, engine, images, load, report, scenarios
from bench.config import FULL, QUICK, RESULTS_DIR, BenchError, Run, log
from engine_harness.free_resources import free_subnet
from engine_harness.program import offline_base_images


def measure_everything(
    client: docker.DockerClient, run: Run, workdir: Path, results: dict[str, Any]
) -> None:
    """Every section, in an order where each one's servers are up only while it runs; each
    phase's seconds go to meta.phases_s."""

    @contextlib.contextmanager
    def phase(name: str, what: str) -> Iterator[None]:
        log(what)
        started = time.monotonic()
        try:
            yield
        finally:
            results["meta"]["phases_s"][name] = round(time.monotonic() - started, 1)

    bases = offline_base_images()
    with phase("images", "images: cold builds (no cache), rebuild after an app change"):
        results["images"] = images.measure(client, run, bases, workdir / "images")
    stack = deploys.BenchStack.create(run, workdir / "repo", bases, free_subnet(client))
    done: dict[str, Any] = {}
    results["deploys"] = done
    try:
        with phase("deploys", f"deploy: stack {run.stack}, cold, then with no change"):
            cold = stack.up()
            done |= {"cold": cold.figures, "no_change": stack.up().figures}
        servers = scenarios.Servers(client, run, cold.exports)
        with phase("load", "load: every scenario at every concurrency"):
            measured = scenarios.measure_load(servers, cold.exports, bases["proxy"])
            results["scenarios"], results["load"] = measured
        with phase("setups", "setups: API and proxy settings, through the proxy"):
            results["setups"] = scenarios.measure_setups(servers)
        with phase("sustained", "sustained load through the proxy"):
            results["sustained"] = scenarios.measure_sustained(servers)
        with phase("handshakes", "TLS handshakes per second at the proxy, full and resumed"):
            results["handshakes"] = scenarios.measure_handshakes(servers)
        with phase("redeploys", "redeploys under a steady stream of requests"):
            # Taken now: once the stack's tag moves on, the old image may go at any time.
            api_image = contract.EXPORT_API_IMAGE
            layers = [images.layers(client, cold.exports[api_image])]

            def keep_layers(key: str, deploy: deploys.Deploy) -> None:
                if key == "app_change":
                    layers.append(images.layers(client, deploy.exports[api_image]))

            url = cold.exports[contract.EXPORT_URL]
            ca_file = workdir / "stack-ca.pem"  # the stream verifies the stack's certificate
            ca_file.write_text(cold.exports.get(contract.EXPORT_CA_CERTIFICATE, ""))
            results["redeploys"], redeployed = deploys.redeploys(
                stack, url, run.quick, keep_layers, str(ca_file)
            )
        done["app_change"] = redeployed["app_change"].figures | {
            "layer_reuse": images.layer_reuse(*layers)
        }
    finally:
        engine.remove_objects(client, run.run_id)
        stack.down()
        for tag in engine.bench_image_tags(client, run.stack):
            # The changed API image's own layers go; the rest stays as build cache.
            engine.remove_image(client, tag, prune="-api:" in tag and "app_change" in done)


def meta(run: Run, client: docker.DockerClient, wrk_version: str) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": run.quick,
        "run_id": run.run_id,
        "stack": run.stack,
        "timing": dataclasses.asdict(run.timing)
        | {"wrk_threads": {str(c): load.threads_for(c) for c in run.timing.concurrencies}},
        "host": {
            "cores": os.cpu_count() or 1,
            "kernel": platform.release(),
            "docker": client.version().get("Version", "?"),
            "wrk": wrk_version,
            "loadavg_start": round(os.getloadavg()[0], 2),
        },
        "phases_s": {},
    }


def conclude(results: dict[str, Any], out: Path) -> None:
    """The derived sections (ratios, targets, ...); results.json first (a report that fails to
    render loses no measurement), then results.md."""
    report.evaluate(results)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps(results, indent=2) + "\n"),
        ("results.md", report.markdown(results)),
    ):
        temporary = out / f"{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(out / name)
    for target in results["targets"]:
        mark = "PASS" if target["pass"] else "FAIL"
        print(f"{mark}  {target['name']}: {target['measured']} (wanted {target['target']})")
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    parser.add_argument("--out", type=Path, help="results folder (default: bench/results/)")
    help_render = "measure nothing: write DIR's results.md again from its results.json"
    parser.add_argument("--render", type=Path, metavar="DIR", help=help_render)
    args = parser.parse_args(argv)
    if args.render:
        conclude(json.loads((args.render / "results.json").read_text()), args.render)
        return 0
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else RESULTS_DIR)
    run = Run(QUICK if args.quick else FULL, out.resolve(), args.quick)
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        wrk_version = load.ensure_tools()
        client = engine.connect()
        for name in offline_base_images().values():
            try:
                client.images.get(name)
            except docker.errors.ImageNotFound:
                raise BenchError(f"base image {name} is missing: run `make base-images`") from None
        left = engine.remove_objects(client)
        if left:
            log(f"removed what earlier runs left: {left}")
        results["meta"] = meta(run, client, wrk_version)
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            measure_everything(client, run, Path(workdir), results)
    except (BenchError, docker.errors.DockerException) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        if results:
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
