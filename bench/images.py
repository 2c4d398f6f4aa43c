"""Image figures: size over the base image, cold build time (no cache), and the rebuild after a
one-line app-code change, with the evidence that the dependency layer was reused."""

import contextlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import docker
import docker.errors

from bench.config import REPO_ROOT, Run
from bench.engine import remove_image

MB: Final = 1_000_000  # as `docker images` counts
APP_FILE: Final = Path("rest_api") / "routes.py"
APP_CHANGE: Final = "# bench: a one-line change of the app code\n"
# The runtime stage's copy of the dependencies' virtualenv (service/Dockerfile).
DEPENDENCY_STEP: Final = "/opt/venv"
# The legacy builder's " ---> <image id>" line after each step.
STEP_IMAGE: Final = re.compile(r"^ ---> ([0-9a-f]{12})$")
# Dockerfile instructions that make a layer (the others only change the image's config).
LAYER_INSTRUCTIONS: Final = ("RUN", "COPY", "ADD")


@dataclass
class Build:
    tag: str
    seconds: float
    # Each Dockerfile step as the build log names it, and whether the cache answered it.
    steps: dict[str, bool]
    # The images (layers) this build made itself, not taken from the cache, oldest first.
    made: list[str]
    # The last image of each stage before the final one (a multi-stage build's build stage).
    stages: list[str]


def copy_context(context: str, destination: Path) -> Path:
    """A copy of a build context, so the app change never touches the working tree."""
    target = destination / context
    shutil.copytree(
        REPO_ROOT / context, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


def build(
    client: docker.DockerClient,
    run: Run,
    context: Path,
    base: str,
    tag: str,
    *,
    nocache: bool,
    cache_from: list[str] | None = None,
) -> Build:
    started = time.monotonic()
    _, log = client.images.build(
        path=str(context),
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels=run.labels,
        nocache=nocache,
        cache_from=cache_from,
        rm=True,
        forcerm=True,
    )
    seconds = time.monotonic() - started
    steps: dict[str, bool] = {}
    made: list[str] = []
    stages: list[str] = []
    step = ""
    last = ""
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
        elif (
            (found := STEP_IMAGE.match(line))
            and not steps.get(step, False)
            # A FROM step's image is the base image itself, never this build's.
            and not step.startswith("FROM")
        ):
            made.append(found.group(1))
    return Build(tag, round(seconds, 2), steps, made, stages)


def size_over_base(client: docker.DockerClient, tag: str, base: str) -> dict[str, float]:
    size = client.images.get(tag).attrs["Size"]
    base_size = client.images.get(base).attrs["Size"]
    return {
        "size_mb": round(size / MB, 2),
        "base_size_mb": round(base_size / MB, 2),
        "over_base_mb": round((size - base_size) / MB, 2),
    }


@dataclass(frozen=True)
class Layers:
    """What the layer-reuse check needs of an image, taken while the image surely exists."""

    dependency: dict[str, Any]
    digests: list[str]


def layers(client: docker.DockerClient, reference: str) -> Layers:
    """The runtime stage's dependency layer (its history entry) and the root filesystem's
    layer digests, bottom up."""
    image = client.images.get(reference)
    for entry in image.history():
        created_by = str(entry.get("CreatedBy", ""))
        if "COPY" in created_by and DEPENDENCY_STEP in created_by:
            dependency = {
                "id": entry["Id"],
                "created_by": created_by.strip(),
                "size_mb": round(entry["Size"] / MB, 2),
            }
            return Layers(dependency, list(image.attrs["RootFS"]["Layers"]))
    raise LookupError(f"{reference}: no layer copies {DEPENDENCY_STEP}")


def layer_reuse(before: Layers, after: Layers) -> dict[str, Any]:
    """Evidence that a rebuild reused the dependency layer: the same layer id in `docker
    history`; and how many layers, bottom up, have the same content digest in both images."""
    shared = 0
    for old, new in zip(before.digests, after.digests, strict=False):
        if old != new:
            break
        shared += 1
    return {
        "dependency_layer_before": before.dependency,
        "dependency_layer_after": after.dependency,
        "layers_before": len(before.digests),
        "layers_after": len(after.digests),
        "leading_layers_shared": shared,
        "reused": before.dependency["id"] == after.dependency["id"],
    }


def measure(
    client: docker.DockerClient, run: Run, base_images: dict[str, str], workdir: Path
) -> dict[str, Any]:
    """Both images cold, then the API again after an app change; the images go afterwards."""
    result: dict[str, Any] = {}
    tags: list[str] = []
    made: list[str] = []
    try:
        for role, context in (("api", "service"), ("proxy", "proxy")):
            copied = copy_context(context, workdir)
            cold = build(
                client, run, copied, base_images[role], run.name(f"{role}:cold"), nocache=True
            )
            tags.append(cold.tag)
            made += cold.made
            result[role] = {
                "base_image": base_images[role],
                **size_over_base(client, cold.tag, base_images[role]),
                "cold_build_s": cold.seconds,
            }
            if role == "api":
                with (copied / APP_FILE).open("a", encoding="utf-8") as file:
                    file.write(APP_CHANGE)
                # Only the cold build's own layers (its image and its build stage) may serve
                # as cache: a concurrent build on the engine can't lend this one its own.
                changed = build(
                    client,
                    run,
                    copied,
                    base_images[role],
                    run.name(f"{role}:change"),
                    nocache=False,
                    cache_from=[cold.tag, *cold.stages],
                )
                tags.append(changed.tag)
                made += changed.made
                result[role]["app_change_build_s"] = changed.seconds
                layer_steps = {
                    step: cached
                    for step, cached in changed.steps.items()
                    if step.startswith(LAYER_INSTRUCTIONS)
                }
                result[role]["app_change_steps_rebuilt"] = [
                    step for step, cached in layer_steps.items() if not cached
                ]
                result[role]["app_change_steps_cached"] = [
                    step for step, cached in layer_steps.items() if cached
                ]
                result[role]["layer_reuse"] = layer_reuse(
                    layers(client, cold.tag), layers(client, changed.tag)
                )
    finally:
        # Newest first: each removal prunes its own untagged layers down to shared ones.
        for tag in reversed(tags):
            remove_image(client, tag, prune=True)
        # The build stage's layers are no parent of the final image: they stay behind, and a
        # later build (the stack's) would take them from the cache as the newest match.
        for image in reversed(made):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image, noprune=False)
    return result
