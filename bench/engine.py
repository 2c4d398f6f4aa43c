"""Docker objects of a run: created labelled, started with files put in, waited on until
ready, and removed by label (this run's, or a dead run's left behind)."""

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

from bench.config import BENCH_LABEL, STACK_PREFIX, Run
from bench.wrk import BenchError

PROJECT_LABEL: Final = "pulumi.project"
STACK_LABEL: Final = "pulumi.stack"
PROJECT: Final = "pulumi-flask-rebar"
BENCH_STACK: Final = re.compile(rf"^{STACK_PREFIX}(\d+)x[0-9a-f]+$")
HEALTH_TIMEOUT: Final = 90.0
# The bench's own containers run no periodic health check: each check is a process that the
# engine starts in the container, and two dozen containers checked twice a second cost the
# engine more CPU than the load being measured. The bench runs the check itself until it
# passes (wait_ready), from this label.
PROBE_LABEL: Final = "pulumi-flask-rebar.bench.probe"
NO_HEALTHCHECK: Final = {"test": ["NONE"]}


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except docker.errors.DockerException as error:
        raise BenchError(f"no Docker engine answers: {error}") from None
    return client


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_run(run_id: str) -> bool:
    pid = run_id.partition("-")[0]
    return pid.isdigit() and not _alive(int(pid))


def _dead_stack(stack: str) -> bool:
    match = BENCH_STACK.match(stack)
    return match is not None and not _alive(int(match.group(1)))


def bench_image_tags(client: docker.DockerClient, stack: str | None = None) -> list[str]:
    """Tags of the images the engine harness built for bench stacks (this one, or any)."""
    pattern = f"{PROJECT}-{stack or STACK_PREFIX + '*'}-*"
    return [
        tag
        for image in client.images.list(filters={"reference": pattern})
        for tag in image.tags
        if tag.startswith(f"{PROJECT}-{STACK_PREFIX}")
    ]


def remove_objects(client: docker.DockerClient, run_id: str | None = None) -> list[str]:
    """Remove the bench's containers, networks and images: this run's (run_id), or those
    of runs whose process is gone (None). Stacks of dead runs go too. Returns their names."""
    removed: list[str] = []

    def wanted(labels: dict[str, str]) -> bool:
        if BENCH_LABEL in labels:
            value = labels[BENCH_LABEL]
            return value == run_id if run_id else _dead_run(value)
        stack = labels.get(STACK_LABEL, "")
        return run_id is None and labels.get(PROJECT_LABEL) == PROJECT and _dead_stack(stack)

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
    if run_id is None:
        for tag in bench_image_tags(client):
            if _dead_stack(tag.split(":")[-1]):
                remove_image(client, tag, prune=False)
                removed.append(tag)
    return removed


def remove_image(client: docker.DockerClient, reference: str, *, prune: bool) -> None:
    """Remove an image or tag; prune=False keeps the untagged layers below (build cache)."""
    with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
        client.images.remove(reference, force=True, noprune=not prune)


def create_network(client: docker.DockerClient, run: Run, what: str) -> Any:
    return client.networks.create(run.name(what), driver="bridge", labels=run.labels)


def _archive(files: dict[str, str]) -> tuple[str, bytes]:
    """One directory's files as a tar archive for put_archive: (directory, archive)."""
    directories = {str(PurePosixPath(path).parent) for path in files}
    if len(directories) != 1:
        raise ValueError(f"files must share one directory: {sorted(files)}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(PurePosixPath(path).name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return directories.pop(), buffer.getvalue()


def start(
    client: docker.DockerClient,
    run: Run,
    what: str,
    image: str,
    *,
    network: str,
    probe: list[str],
    aliases: list[str] | None = None,
    files: dict[str, str] | None = None,
    **kwargs: Any,
) -> Container:
    """Create (never pull), put files in, start; labelled with the run and with `probe`, the
    command that succeeds once the container serves. Not yet ready."""
    container = client.containers.create(
        image,
        name=run.name(what),
        labels={**run.labels, PROBE_LABEL: json.dumps(probe)},
        detach=True,
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=aliases)},
        healthcheck=NO_HEALTHCHECK,
        **kwargs,
    )
    if files:
        directory, archive = _archive(files)
        container.put_archive(directory, archive)
    container.start()
    return container


def image_probe(client: docker.DockerClient, image: str) -> list[str]:
    """The image's own HEALTHCHECK test, as a command to run in the container."""
    test = client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
    kind, *command = test
    return ["/bin/sh", "-c", command[0]] if kind == "CMD-SHELL" else command


def http_probe(port: int) -> list[str]:
    """GET / answers 200 on `port`, with bash's /dev/tcp (the images have no curl)."""
    probe = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3"
        ' && read -r _ status _ <&3 && [ "$status" = 200 ]'
    )
    return ["bash", "-c", probe]


def wait_ready(*containers: Container, timeout: float = HEALTH_TIMEOUT) -> None:
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
