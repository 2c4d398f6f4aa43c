"""`python -m bench [--quick] [--out DIR] [--render DIR]`: bench/README.md says what it does."""

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

from bench import config, deploys, load, report, scenarios
from bench.config import MAIN_STACK, RESULTS_DIR, STACKS, TABLES, BenchError, Run, Timing, log
from engine_harness.free_resources import free_subnet
from engine_harness.program import offline_base_images


def measure_everything(
    client: docker.DockerClient, run: Run, workdir: Path, results: dict[str, Any]
) -> None:
    """Every section, each one's servers up only while it runs; its seconds in meta.phases_s."""

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        log(f"{name}...")
        started = time.monotonic()
        try:
            yield
        finally:
            results["meta"]["phases_s"][name] = round(time.monotonic() - started, 1)

    bases = offline_base_images()
    with phase("images"):
        results["images"] = deploys.measure_images(client, run, bases, workdir / "images")
    stacks: dict[str, deploys.BenchStack] = {}
    done: dict[str, Any] = results.setdefault("deploys", {})
    try:
        with phase("deploys"):  # each stack cold, one after the other (each takes a free
            for key in STACKS:  # subnet), then the first again with no change
                subnet = free_subnet(client)
                stacks[key] = deploys.BenchStack.create(run, key, workdir / key, bases, subnet)
                done["cold" if key == MAIN_STACK else f"{key}_cold"] = stacks[key].up()
            done["no_change"] = stacks[MAIN_STACK].up()
        servers = {
            key: scenarios.Servers(client, run, key, stack.exports, bases["proxy"])
            for key, stack in stacks.items()
        }
        with phase("load"):
            results["scenarios"], results["load"] = scenarios.measure_load(servers)
        with phase("setups"):
            results["setups"] = scenarios.measure_setups(servers)
        with phase("sustained"):
            results["sustained"] = scenarios.measure_sustained(servers[MAIN_STACK])
        with phase("redeploys"):
            results["redeploys"], redeployed = deploys.redeploys(stacks, run.quick)
        done["app_change"] = redeployed["app_change"]
    finally:
        config.remove_objects(client, run.run_id)
        for stack in stacks.values():
            stack.down()
        for tag in config.stack_images(client, run.stack()):
            config.remove_image(client, tag)


def conclude(results: dict[str, Any], out: Path) -> None:
    report.evaluate(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(report.markdown(results), encoding="utf-8")
    for target in results["targets"]:
        mark = "PASS" if target["pass"] else "FAIL"
        print(f"{mark}  {target['name']}: {target['measured']} (wanted {target['target']})")
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    parser.add_argument("--out", type=Path, help="results folder (default: bench/results/)")
    parser.add_argument("--render", type=Path, metavar="DIR", help="DIR/results.md again only")
    args = parser.parse_args(argv)
    if args.render:
        conclude(json.loads((args.render / "results.json").read_text()), args.render)
        return 0
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else RESULTS_DIR)
    run = Run(Timing(**TABLES["timing"]["quick" if args.quick else "full"]), out, args.quick)
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        wrk = load.ensure_tools()
        client = docker.from_env(timeout=900)
        missing = [name for name in offline_base_images().values() if not client.images.list(name)]
        if missing:
            raise BenchError(f"base images {missing} are missing: run `make base-images`")
        log(f"removed what earlier runs left: {config.remove_objects(client)}")
        results["meta"] = {
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": run.quick,
            "run_id": run.run_id,
            "stacks": {key: run.stack(key) for key in STACKS},
            "timing": dataclasses.asdict(run.timing)
            | {"wrk_threads": {str(c): load.threads_for(c) for c in run.timing.concurrencies}},
            "host": {
                "cores": os.cpu_count() or 1,
                "kernel": platform.release(),
                "docker": client.version().get("Version", "?"),
                "wrk": wrk,
                "loadavg_start": round(os.getloadavg()[0], 2),
            },
            "phases_s": {},
        }
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            measure_everything(client, run, Path(workdir), results)
    except (BenchError, docker.errors.DockerException) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        if results:  # what was measured before the error
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
