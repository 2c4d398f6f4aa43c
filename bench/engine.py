"""The Docker engine, and the removal of the bench's objects by label: this run's, or what a
dead run left behind."""

import contextlib
import os
import re
from typing import Final

import docker
import docker.errors

import contract
from bench.config import BENCH_LABEL, STACK_PREFIX, BenchError

PROJECT: Final = "pulumi-flask-rebar"
BENCH_STACK: Final = re.compile(rf"^{STACK_PREFIX}(\d+)x[0-9a-f]+$")


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except docker.errors.DockerException as error:
        raise BenchError(f"no Docker engine answers: {error}") from None
    return client


def _dead(pid: str) -> bool:
    """Whether `pid` (digits; anything else is no pid) names a process that is gone."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stack_pid(stack: str) -> str:
    match = BENCH_STACK.match(stack)
    return match.group(1) if match else ""


def bench_image_tags(client: docker.DockerClient, stack: str | None = None) -> list[str]:
    """Tags of the images the engine harness built for bench stacks (this one, or any)."""
    pattern = f"{PROJECT}-{stack or STACK_PREFIX + '*'}-*"
    images = client.images.list(filters={"reference": pattern})
    return [t for i in images for t in i.tags if t.startswith(f"{PROJECT}-{STACK_PREFIX}")]


def remove_objects(client: docker.DockerClient, run_id: str | None = None) -> list[str]:
    """Remove the bench's containers, networks and images: this run's (run_id), or those of
    runs whose process is gone (None), their stacks included. Returns their names."""

    def wanted(labels: dict[str, str]) -> bool:
        if BENCH_LABEL in labels:
            value = labels[BENCH_LABEL]
            return value == run_id if run_id else _dead(value.partition("-")[0])
        stack = _stack_pid(labels.get(contract.LABEL_STACK, ""))
        return not run_id and labels.get(contract.LABEL_PROJECT) == PROJECT and _dead(stack)

    removed: list[str] = []
    for container in client.containers.list(all=True):
        if wanted(container.labels):
            container.remove(force=True)
            removed.append(container.name)
    for network in client.networks.list():
        if wanted(network.attrs.get("Labels") or {}):
            network.remove()
            removed.append(network.name)
    for image in client.images.list(filters={"label": BENCH_LABEL}):
        if wanted(image.labels):
            remove_image(client, image.id, prune=True)
            removed.append(image.short_id)
    for tag in bench_image_tags(client) if run_id is None else []:
        if _dead(_stack_pid(tag.split(":")[-1])):
            remove_image(client, tag, prune=False)
            removed.append(tag)
    return removed


def remove_image(client: docker.DockerClient, reference: str, *, prune: bool) -> None:
    """Remove an image or tag; prune=False keeps the untagged layers below (build cache)."""
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(reference, force=True, noprune=not prune)
