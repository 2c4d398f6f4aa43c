"""Docker objects of a run: created labelled, started with a file put in, probed until ready,
and removed by label (this run's, or what a dead run left behind)."""

import contextlib
import io
import json
import os
import re
import tarfile
import time
from pathlib import PurePosixPath
from typing import Any, Final

import docker
import docker.errors
from docker.models.containers import Container

import contract
from bench.config import BENCH_LABEL, STACK_PREFIX, BenchError, Run

PROJECT: Final = "pulumi-flask-rebar"
BENCH_STACK: Final = re.compile(rf"^{STACK_PREFIX}(\d+)x[0-9a-f]+$")
# The bench's own containers run no periodic health check: each check is a process that the
# engine starts in the container, and two dozen containers checked twice a second cost the
# engine more CPU than the load being measured. The bench runs the check itself until it
# passes (wait_ready), from this label.
PROBE_LABEL: Final = "pulumi-flask-rebar.bench.probe"


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


def start(
    client: docker.DockerClient,
    run: Run,
    what: str,
    image: str,
    *,
    network: str,
    probe: list[str],
    aliases: list[str] | None = None,
    file: tuple[str, str] | None = None,
    **kwargs: Any,
) -> Container:
    """Create (never pull), put `file` (path, text) in, start; labelled with the run and with
    `probe`, the command that succeeds once the container serves. Not yet ready."""
    container = client.containers.create(
        image,
        name=run.name(what),
        labels={**run.labels, PROBE_LABEL: json.dumps(probe)},
        detach=True,
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=aliases)},
        healthcheck={"test": ["NONE"]},
        **kwargs,
    )
    if file:
        path, data = PurePosixPath(file[0]), file[1].encode()
        info = tarfile.TarInfo(path.name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.addfile(info, io.BytesIO(data))
        container.put_archive(str(path.parent), archive.getvalue())
    container.start()
    return container


def image_probe(client: docker.DockerClient, image: str) -> list[str]:
    """The image's own HEALTHCHECK test, as a command to run in the container."""
    kind, *command = client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
    return ["/bin/sh", "-c", command[0]] if kind == "CMD-SHELL" else command


def http_probe(port: int) -> list[str]:
    """GET / answers 200 on `port`, with bash's /dev/tcp (the images have no curl)."""
    probe = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3"
        ' && read -r _ status _ <&3 && [ "$status" = 200 ]'
    )
    return ["bash", "-c", probe]


def wait_ready(*containers: Container, timeout: float = 90.0) -> None:
    """Run each container's probe until it succeeds."""
    deadline = time.monotonic() + timeout
    for container in containers:
        probe = json.loads(container.labels[PROBE_LABEL])
        while True:
            container.reload()
            if container.status == "running" and container.exec_run(probe).exit_code == 0:
                break
            if container.status in {"exited", "dead"} or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                raise BenchError(f"{container.name} not ready ({container.status}):\n{logs}")
            time.sleep(0.25)


def netns_pid(container: Container) -> int:
    """A process of the container: its network namespace is the container's."""
    container.reload()
    return int(container.attrs["State"]["Pid"])
