"""Image figures: size over the base image, cold build time (no cache), and the rebuild after a
one-line app-code change, with the evidence that the dependency layer was reused."""

import contextlib
import re
import shutil
import time
from pathlib import Path
from typing import Any, Final

import docker
import docker.errors

from bench.config import REPO_ROOT, Run
from bench.engine import remove_image

MB: Final = 1_000_000  # as `docker images` counts
APP_CHANGE: Final = ("rest_api/routes.py", "# bench: a one-line change of the app code\n")
# The runtime stage's copy of the dependencies' virtualenv (service/Dockerfile).
DEPENDENCY_STEP: Final = "/opt/venv"
# The legacy builder's " ---> <image id>" line after each step.
STEP_IMAGE: Final = re.compile(r"^ ---> ([0-9a-f]{12})$")
# Dockerfile instructions that make a layer (the others only change the image's config).
LAYER_INSTRUCTIONS: Final = ("RUN", "COPY", "ADD")


def build(
    client: docker.DockerClient, run: Run, context: Path, base: str, tag: str, **options: Any
) -> dict[str, Any]:
    """A build with the legacy builder (options: nocache, cache_from): its seconds; each
    Dockerfile step and whether the cache answered it; the images (layers) it made itself,
    oldest first; the last image of each stage before the final one (the build stage)."""
    started = time.monotonic()
    options |= {"buildargs": {"BASE_IMAGE": base}, "labels": run.labels}
    _, log = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, **options)
    built: dict[str, Any] = {"tag": tag, "seconds": round(time.monotonic() - started, 2)}
    steps: dict[str, bool] = {}
    made: list[str] = []
    stages: list[str] = []
    step = last = ""
    for line in "".join(str(entry.get("stream", "")) for entry in log).splitlines():
        if found := STEP_IMAGE.match(line):
            last = found.group(1)
        if line.startswith("Step "):
            step = line.partition(" : ")[2].strip()
            steps[step] = False
            if step.startswith("FROM") and last:
                stages.append(last)
        elif "Using cache" in line:
            steps[step] = True
        # A FROM step's image is the base image itself, never this build's.
        elif found and not steps.get(step, False) and not step.startswith("FROM"):
            made.append(found.group(1))
    return built | {"steps": steps, "made": made, "stages": stages}


def layers(client: docker.DockerClient, reference: str) -> dict[str, Any]:
    """What the layer-reuse check needs of an image, taken while it surely exists: the runtime
    stage's dependency layer (its history entry) and the layer digests, bottom up."""
    image = client.images.get(reference)
    for entry in image.history():
        created_by = str(entry.get("CreatedBy", ""))
        if "COPY" in created_by and DEPENDENCY_STEP in created_by:
            size = round(entry["Size"] / MB, 2)
            dependency = {"id": entry["Id"], "created_by": created_by.strip(), "size_mb": size}
            return {"dependency": dependency, "digests": list(image.attrs["RootFS"]["Layers"])}
    raise LookupError(f"{reference}: no layer copies {DEPENDENCY_STEP}")


def layer_reuse(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Evidence that a rebuild reused the dependency layer: the same layer id in `docker
    history`; and how many layers, bottom up, have the same content digest in both images."""
    shared = 0
    for old, new in zip(before["digests"], after["digests"], strict=False):
        if old != new:
            break
        shared += 1
    return {
        "dependency_layer_before": before["dependency"],
        "dependency_layer_after": after["dependency"],
        "layers_before": len(before["digests"]),
        "layers_after": len(after["digests"]),
        "leading_layers_shared": shared,
        "reused": before["dependency"]["id"] == after["dependency"]["id"],
    }


def measure(
    client: docker.DockerClient, run: Run, bases: dict[str, str], workdir: Path
) -> dict[str, Any]:
    """Both images cold, then the API again after an app change; the images go afterwards."""
    result: dict[str, Any] = {}
    builds: list[dict[str, Any]] = []
    try:
        for role, context in (("api", "service"), ("proxy", "proxy")):
            # A copy of the build context, so the app change never touches the working tree.
            copied = workdir / context
            shutil.copytree(
                REPO_ROOT / context, copied, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
            cold = build(client, run, copied, bases[role], run.name(f"{role}:cold"), nocache=True)
            builds.append(cold)
            size, base_size = (
                client.images.get(i).attrs["Size"] for i in (cold["tag"], bases[role])
            )
            result[role] = {
                "base_image": bases[role],
                "size_mb": round(size / MB, 2),
                "base_size_mb": round(base_size / MB, 2),
                "over_base_mb": round((size - base_size) / MB, 2),
                "cold_build_s": cold["seconds"],
            }
            if role != "api":
                continue
            with (copied / APP_CHANGE[0]).open("a", encoding="utf-8") as file:
                file.write(APP_CHANGE[1])
            # Only the cold build's own layers (its image and its build stage) may serve as
            # cache: a concurrent build on the engine can't lend this one its own.
            cache = [cold["tag"], *cold["stages"]]
            tag = run.name(f"{role}:change")
            changed = build(client, run, copied, bases[role], tag, nocache=False, cache_from=cache)
            builds.append(changed)
            steps = {
                s: cached
                for s, cached in changed["steps"].items()
                if s.startswith(LAYER_INSTRUCTIONS)
            }
            result[role] |= {
                "app_change_build_s": changed["seconds"],
                "app_change_steps_rebuilt": [s for s, cached in steps.items() if not cached],
                "app_change_steps_cached": [s for s, cached in steps.items() if cached],
                "layer_reuse": layer_reuse(layers(client, cold["tag"]), layers(client, tag)),
            }
    finally:
        # Newest first: each removal prunes its own untagged layers down to shared ones.
        for done in reversed(builds):
            remove_image(client, done["tag"], prune=True)
        # The build stage's layers are no parent of the final image: they stay behind, and a
        # later build (the stack's) would take them from the cache as the newest match.
        for image in reversed([image for done in builds for image in done["made"]]):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image, noprune=False)
    return result
