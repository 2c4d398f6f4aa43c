"""Builds and deploys: the images, the stacks (as `make local-up` deploys), the redeploys."""

import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path
from typing import Any, Final

import docker
import yaml

import contract
from bench.config import REPO_ROOT, STACKS, BenchError, Run, remove_image, rows
from engine_harness import image_build, program
from engine_harness.free_resources import free_port
from engine_harness.request_stream import RequestStream

REDEPLOYS: Final = rows("redeploy", "key", "title")
# What a copy leaves out: the tools' caches, state and passphrase, and what no deploy reads.
NOT_COPIED: Final = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", "__pycache__", "*.pyc", ".engine-state", ".pulumi-*", "results"
)
AFTER: Final = 200  # requests answered after a redeploy returned, before the stream stops
MB: Final = 1_000_000  # as `docker images` counts
APP_CHANGE: Final = ("rest_api/routes.py", "# bench: a one-line change of the app code\n")
DEPENDENCY_STEP: Final = "/opt/venv"  # the runtime stage's copy of the virtualenv
LAYER_STEPS: Final = ("RUN", "COPY", "ADD", "WORKDIR")  # the instructions that make a layer


def layer_reuse(client: docker.DockerClient, before: str, after: str, base: str) -> dict[str, Any]:
    """Whether `after`, a rebuild of `before`, has the same layers up to the dependency's."""
    digests = [client.images.get(tag).attrs["RootFS"]["Layers"] for tag in (before, after)]
    shared = len(list(takewhile(lambda pair: pair[0] == pair[1], zip(*digests, strict=False))))
    base_image = client.images.get(base)
    own = list(reversed(client.images.get(after).history()))[len(base_image.history()) :]
    steps = [str(e["CreatedBy"]) for e in own if str(e["CreatedBy"]).startswith(LAYER_STEPS)]
    first = len(base_image.attrs["RootFS"]["Layers"])
    index = next(i for i, step in enumerate(steps) if DEPENDENCY_STEP in step)  # a COPY
    size = next(e["Size"] for e in own if e["CreatedBy"] == steps[index])
    return {
        "dependency_layer_after": {"created_by": steps[index], "size_mb": round(size / MB, 2)},
        "dependency_position": first + index + 1,
        "layers_after": len(digests[1]),
        "leading_layers_shared": shared,
        "steps_rebuilt": [step for i, step in enumerate(steps) if first + i >= shared],
        "reused": shared > first + index,
    }


def measure_images(
    client: docker.DockerClient, run: Run, bases: dict[str, str], workdir: Path
) -> dict[str, Any]:
    """The API rebuilt after an app change as a deploy builds it (BuildKit); both images cold,
    by the classic builder: a BuildKit no-cache build leaves rival cache records that BuildKit
    then picks among (Docker 20.10), and no deploy would reuse layers. They go after."""

    def build(context: str, base: str, tag: str, nocache: bool) -> float:
        started, path, args = time.monotonic(), workdir / context, {"BASE_IMAGE": base}
        if nocache:  # forcerm: the classic builder's step containers go, even after a failure
            client.images.build(path=str(path), tag=tag, buildargs=args, nocache=True, forcerm=True)
        else:
            image_build.build(client, path, path / "Dockerfile", tag, args, None)
        return round(time.monotonic() - started, 2)

    result: dict[str, Any] = {}
    tags = [run.name(t) for t in ("api:cold", "proxy:cold", "api:change", "api:cached")]
    try:
        for context in ("service", "proxy"):
            shutil.copytree(REPO_ROOT / context, workdir / context, ignore=NOT_COPIED)
        build("service", bases["api"], tags[3], nocache=False)
        with (workdir / "service" / APP_CHANGE[0]).open("a", encoding="utf-8") as file:
            file.write(APP_CHANGE[1])
        app_change_s = build("service", bases["api"], tags[2], nocache=False)
        reuse = layer_reuse(client, tags[3], tags[2], bases["api"])
        for role, context, tag in (("api", "service", tags[0]), ("proxy", "proxy", tags[1])):
            seconds = build(context, bases[role], tag, nocache=True)
            size, base = (client.images.get(i).attrs["Size"] for i in (tag, bases[role]))
            result[role] = {
                "base_image": bases[role],
                "size_mb": round(size / MB, 2),
                "over_base_mb": round((size - base) / MB, 2),
                "cold_build_s": seconds,
            }
        result["api"] |= {"app_change_build_s": app_change_s, "layer_reuse": reuse}
    finally:
        for tag in tags:
            remove_image(client, tag)
    return result


@dataclass
class BenchStack:
    """A stack (`key`: its row of [[stack]]) deployed from a copy of the repository at `root`."""

    run: Run
    key: str
    root: Path
    config: dict[str, str]
    exports: dict[str, Any] = field(default_factory=dict)
    ca_file: str | None = None

    @classmethod
    def create(
        cls, run: Run, key: str, root: Path, bases: dict[str, str], subnet: str
    ) -> "BenchStack":
        """The dev config, the row's, a free port and `subnet`, no rate limit, the offline bases."""
        shutil.copytree(REPO_ROOT, root, ignore=NOT_COPIED)
        stack = cls(run, key, root, program.stack_config("dev"))
        row = STACKS[key]
        stack.configure(proxyPort=str(free_port()), networkSubnet=subnet, rateLimitPerSecond="0")
        stack.configure(apiBaseImage=bases[row["base"]], proxyBaseImage=bases["proxy"])
        stack.configure(**row["config"])
        return stack

    def configure(self, **values: str) -> None:
        self.config |= {f"{program.project_name()}:{key}": value for key, value in values.items()}

    def _harness(self, action: str) -> subprocess.CompletedProcess[str]:
        stack = self.run.stack(self.key)
        (self.root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": self.config}))
        command = [sys.executable, "-m", "engine_harness", action, "--stack", stack, "--json"]
        # This interpreter, the copy's own harness (the working folder comes first for -m).
        return subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=900, check=False, cwd=self.root
        )

    def up(self, *, may_fail: bool = False) -> dict[str, Any]:
        """A deploy's figures: wall seconds, each resource's fate, why it failed (or None)."""
        started = time.monotonic()
        result = self._harness("up")
        if result.returncode != 0 and not (may_fail and result.stdout.strip()):
            raise BenchError(f"engine_harness up failed:\n{result.stderr[-4000:]}")
        output = json.loads(result.stdout.strip().splitlines()[-1])
        summary, kinds = output.get("summary", {}), output.get("kinds", {})
        containers = {
            action: [n for n in summary.get(action, []) if kinds.get(n, "").startswith("container")]
            for action in ("created", "replaced")
        }
        if output.get("error") is None:
            self.exports = output["exports"]
        if ca := self.exports.get(contract.EXPORT_CA_CERTIFICATE):  # the stream verifies by it:
            (self.root / "stack-ca.new").write_text(ca)  # replaced whole, never read half-written
            self.ca_file = str((self.root / "stack-ca.new").replace(self.root / "stack-ca.pem"))
        return {
            "seconds": round(time.monotonic() - started, 2),
            **summary,
            "containers_created": len(containers["created"]),
            "containers_replaced": len(containers["replaced"]),
            "containers_replaced_kinds": sorted(kinds[n] for n in containers["replaced"]),
            "api_containers": self.exports.get(contract.EXPORT_API_CONTAINERS, []),
            "error": output.get("error"),
        }

    def down(self) -> None:
        result = self._harness("down")
        if result.returncode != 0:
            raise BenchError(f"engine_harness down failed:\n{result.stderr[-4000:]}")


def redeploys(stacks: dict[str, BenchStack], quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each redeploy under a steady stream of requests: its figures, and its deploy's."""
    results: dict[str, Any] = {}
    deployed: dict[str, Any] = {}
    for redeploy in [r for r in REDEPLOYS if r["quick"] or not quick]:
        stack = stacks[redeploy["stack"]]
        for relative, text in redeploy["append"].items():
            with (stack.root / relative).open("a", encoding="utf-8") as file:
                file.write(text)
        for relative in redeploy["restore"]:
            shutil.copy(REPO_ROOT / relative, stack.root / relative)
        stack.configure(**redeploy["config"])
        with RequestStream(stack.exports[contract.EXPORT_URL], ca_file=stack.ca_file) as stream:
            deploy = stack.up(may_fail=redeploy["fails"])
            time.sleep(0 if quick else redeploy["after_s"])
            stream.wait_for_successes(len(stream.tally.results) + AFTER)
        deployed[redeploy["key"]] = deploy
        latency = statistics.quantiles([r.seconds * 1000 for r in stream.tally.results], n=100)
        results[redeploy["key"]] = {
            "title": redeploy["title"],
            "seconds": deploy["seconds"],
            "deploy_failed": deploy["error"] is not None,
            "expected_to_fail": redeploy["fails"],
            "requests": len(stream.tally.results),
            "failed": len(stream.tally.failed),
            "outcomes": stream.tally.outcomes,
            "p50_ms": round(latency[49], 1),
            "p99_ms": round(latency[98], 1),
            "slowest_s": round(stream.tally.slowest, 3),
            "no_answer_s": round(stream.tally.outage(), 2),
            "replaced": deploy.get("replaced", []),
        }
    return results, deployed
