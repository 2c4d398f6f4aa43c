"""Swarm services and secrets applied as pulumi-docker applies them, through the Docker SDK.

Read from kreuzwerker/terraform-provider-docker v4.5.0 (what pulumi-docker 5.x bridges),
internal/provider/: resource_docker_service_funcs.go (Create, Update, converge, deleteService),
resource_docker_service_structures.go (createServiceSpec), resource_docker_secret.go.
docs/provider-fidelity.md has the rules with the rest of the harness's.

- Create: ServiceCreate with the whole spec (the provider asks the registry for the image's
  digest; the program declares images by digest already). With `convergeConfig`, wait: the
  first look after its delay (7 s unless declared), then about 5 s, then every 10 s, until as
  many tasks run as the service has replicas; on timeout the service is removed and the
  create fails ("did not converge").
- Update: ServiceUpdate with the whole spec and the service's version. With `convergeConfig`,
  wait: first after a fixed 7 s, then as above, until the update status is "completed" (or, with
  no update status, as many tasks run as replicas); a rollback that Swarm completed, or a pause,
  fails the update with the provider's words ("service rollback completed: ...").
- Delete: ServiceRemove; with a stop grace period, the task containers on the connected engine
  are waited for (that long) and removed. A secret: SecretRemove.
- Inputs the harness does not translate are refused (UnappliedInputError), as for containers.
"""

import base64
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any, Final

import docker
import docker.errors
import docker.types
import requests

# Service inputs the harness applies, by path (pulumi-docker wire names; "[]": each item of a
# list). Anything else declared is refused.
SERVICE_INPUTS: Final[dict[str, str]] = {
    "": "name labels taskSpec mode updateConfig rollbackConfig endpointSpec convergeConfig",
    "taskSpec": "containerSpec networksAdvanceds resources restartPolicy placement logDriver",
    "taskSpec.containerSpec": "image env user readOnly capDrops mounts labels secrets sysctl"
    " stopGracePeriod",
    "taskSpec.containerSpec.mounts[]": "target type tmpfsOptions",
    "taskSpec.containerSpec.mounts[].tmpfsOptions": "sizeBytes mode",
    "taskSpec.containerSpec.secrets[]": "secretId secretName fileName fileUid fileGid fileMode",
    "taskSpec.networksAdvanceds[]": "id aliases",
    "taskSpec.resources": "limits reservation",
    "taskSpec.resources.limits": "memoryBytes",
    "taskSpec.resources.reservation": "memoryBytes",
    "taskSpec.restartPolicy": "condition delay",
    "taskSpec.placement": "constraints maxReplicas",
    "taskSpec.logDriver": "name",
    "mode": "replicated",
    "mode.replicated": "replicas",
    "updateConfig": "parallelism delay failureAction monitor maxFailureRatio order",
    "rollbackConfig": "parallelism delay failureAction monitor maxFailureRatio order",
    "endpointSpec": "mode ports",
    "endpointSpec.ports[]": "targetPort publishedPort publishMode protocol",
    "convergeConfig": "delay timeout",
}
SECRET_INPUTS: Final = frozenset({"name", "data", "labels"})
# The provider's converge timing: its default delay, the fixed delay after an update, then the
# SDK's StateChangeConf backoff (MinTimeout 5 s, doubling, 10 s at most).
CONVERGE_DELAY: Final = "7s"
CONVERGE_TIMEOUT: Final = "3m"
UPDATE_DELAY_SECONDS: Final = 7.0
POLL_SECONDS: Final = (5.0, 10.0)
# UpdateStatus states that end an update wait, and the provider's error for each failure.
UPDATE_FAILURES: Final = {
    "rollback_completed": "service rollback completed",
    "paused": "service update paused",
    "rollback_paused": "service rollback paused",
}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


class ServiceFailed(RuntimeError):
    """The service did not converge, or Swarm rolled its update back or paused it."""


def nanoseconds(duration: str) -> int:
    """A Go duration ("15s", "1m30s"), as the provider's time.ParseDuration reads it."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a duration such as 10s or 1m30s")
    return int(sum(float(number) * _UNIT_NS[unit] for number, unit in parts))


def require_known(value: dict[str, Any], refuse: Callable[[str, list[str]], None]) -> None:
    """Refuse service inputs the harness would not apply, naming their path."""
    for path, known in SERVICE_INPUTS.items():
        nodes: list[Any] = [value]
        for part in filter(None, path.split(".")):
            name = part.removesuffix("[]")
            nodes = [node.get(name) for node in nodes if isinstance(node, dict)]
            nodes = (
                [item for node in nodes for item in node or []] if part.endswith("[]") else nodes
            )
        for node in nodes:
            unknown = sorted(set(node or {}) - set(known.split()))
            if unknown:
                refuse(path or "service", unknown)


def _integer(value: float | int | None) -> int | None:
    """A number as the provider's schema types it (the mock runtime hands floats over)."""
    return None if value is None else int(value)


def _labels(entries: list[dict[str, str]] | None) -> dict[str, str]:
    return {entry["label"]: entry["value"] for entry in entries or []}


def _rollout(config: dict[str, Any] | None, kind: type) -> Any:
    if not config:
        return None
    return kind(
        parallelism=int(config.get("parallelism", 1)),
        delay=nanoseconds(config.get("delay", "0s")),
        failure_action=config.get("failureAction", "pause"),
        monitor=nanoseconds(config.get("monitor", "5s")),
        max_failure_ratio=float(config.get("maxFailureRatio", "0.0")),
        order=config.get("order", "stop-first"),
    )


def _container_spec(spec: dict[str, Any]) -> docker.types.ContainerSpec:
    mounts = []
    for mount in spec.get("mounts") or []:
        if mount.get("type") != "tmpfs" or set(mount) - {"target", "type", "tmpfsOptions"}:
            raise ValueError(f"mounts {mount}: only tmpfs mounts (target, tmpfsOptions) apply")
        options = mount.get("tmpfsOptions") or {}
        mounts.append(
            docker.types.Mount(
                mount["target"],
                None,
                type="tmpfs",
                tmpfs_size=_integer(options.get("sizeBytes")),
                tmpfs_mode=_integer(options.get("mode")),
            )
        )
    secrets = [
        docker.types.SecretReference(
            secret["secretId"],
            secret.get("secretName"),
            filename=secret["fileName"],
            uid=secret.get("fileUid", "0"),
            gid=secret.get("fileGid", "0"),
            mode=int(secret.get("fileMode", 0o444)),
        )
        for secret in spec.get("secrets") or []
    ]
    grace = spec.get("stopGracePeriod")
    return docker.types.ContainerSpec(
        spec["image"],
        env=spec.get("env") or None,
        user=spec.get("user"),
        labels=_labels(spec.get("labels")),
        mounts=mounts or None,
        stop_grace_period=nanoseconds(grace) if grace else None,
        secrets=secrets or None,
        read_only=spec.get("readOnly"),
        cap_drop=spec.get("capDrops") or None,
        sysctls=spec.get("sysctl") or None,
    )


def service_spec(inputs: dict[str, Any]) -> dict[str, Any]:
    """The Docker SDK's create_service/update_service arguments for a Service's inputs (the
    provider's createServiceSpec)."""
    task = inputs["taskSpec"]
    resources = task.get("resources") or {}
    limits, reservation = resources.get("limits") or {}, resources.get("reservation") or {}
    restart = task.get("restartPolicy") or {}
    placement = task.get("placement") or {}
    replicated = (inputs.get("mode") or {}).get("replicated") or {}
    endpoint = inputs.get("endpointSpec") or {}
    ports = {
        int(port["publishedPort"]): (
            int(port["targetPort"]),
            port.get("protocol", "tcp"),
            port.get("publishMode", "ingress"),
        )
        for port in endpoint.get("ports") or []
    }
    return {
        "name": inputs["name"],
        "labels": _labels(inputs.get("labels")),
        "task_template": docker.types.TaskTemplate(
            _container_spec(task["containerSpec"]),
            resources=docker.types.Resources(
                mem_limit=_integer(limits.get("memoryBytes")),
                mem_reservation=_integer(reservation.get("memoryBytes")),
            ),
            restart_policy=docker.types.RestartPolicy(
                condition=restart.get("condition", "any"),
                delay=nanoseconds(restart["delay"]) if "delay" in restart else 0,
            )
            if restart
            else None,
            placement=docker.types.Placement(
                constraints=placement.get("constraints"),
                maxreplicas=_integer(placement.get("maxReplicas")),
            )
            if placement
            else None,
            log_driver=docker.types.DriverConfig(task["logDriver"]["name"])
            if "logDriver" in task
            else None,
            networks=[
                docker.types.NetworkAttachmentConfig(
                    network["id"], aliases=network.get("aliases") or None
                )
                for network in task.get("networksAdvanceds") or []
            ],
        ),
        "mode": docker.types.ServiceMode("replicated", int(replicated.get("replicas", 1))),
        "update_config": _rollout(inputs.get("updateConfig"), docker.types.UpdateConfig),
        "rollback_config": _rollout(inputs.get("rollbackConfig"), docker.types.RollbackConfig),
        "endpoint_spec": docker.types.EndpointSpec(mode=endpoint.get("mode"), ports=ports or None),
    }


def _running(client: docker.DockerClient, service_id: str) -> int:
    """Running tasks, one per slot, on nodes that are not down (replicatedConsoleLogUpdater)."""
    active = {node.id for node in client.nodes.list() if node.attrs["Status"]["State"] != "down"}
    slots = {
        task.get("Slot")
        for task in client.api.tasks(filters={"service": service_id, "desired-state": "running"})
        if task["Status"]["State"] == "running" and task.get("NodeID") in active
    }
    return len(slots)


def converge(
    client: docker.DockerClient, service_id: str, inputs: dict[str, Any], *, update: bool
) -> None:
    """Wait as the provider's converge does; raise ServiceFailed with its words."""
    config = inputs.get("convergeConfig")
    if config is None:
        return  # no wait without converge_config
    limit = config.get("timeout", CONVERGE_TIMEOUT)
    timeout = nanoseconds(limit) / 1e9
    delay = nanoseconds(config.get("delay", CONVERGE_DELAY)) / 1e9
    if update:
        delay = UPDATE_DELAY_SECONDS
    deadline = time.monotonic() + timeout
    time.sleep(min(delay, timeout))
    waits = iter(POLL_SECONDS)
    while True:
        service = client.api.inspect_service(service_id)
        replicas = service["Spec"]["Mode"]["Replicated"]["Replicas"]
        status = service.get("UpdateStatus") or {}
        state = status.get("State")
        if update and state in UPDATE_FAILURES:
            raise ServiceFailed(f"{UPDATE_FAILURES[state]}: {status.get('Message', '')}")
        if update and state == "completed":
            return
        if (not update or state in (None, "updating")) and _running(client, service_id) == replicas:
            return
        if time.monotonic() >= deadline:
            raise ServiceFailed(f"Service with ID ({service_id}) did not converge after {limit}")
        time.sleep(min(next(waits, POLL_SECONDS[-1]), max(deadline - time.monotonic(), 0)))


def create_service(client: docker.DockerClient, inputs: dict[str, Any]) -> str:
    """ServiceCreate, then the converge wait; a service that doesn't converge is removed."""
    created = client.api.create_service(**service_spec(inputs))
    service_id = str(created["ID"])
    try:
        converge(client, service_id, inputs, update=False)
    except ServiceFailed:
        client.api.remove_service(service_id)
        raise
    return service_id


def update_service(client: docker.DockerClient, service_id: str, inputs: dict[str, Any]) -> None:
    """ServiceUpdate with the whole spec at the service's version, then the converge wait."""
    version = client.api.inspect_service(service_id)["Version"]["Index"]
    spec = service_spec(inputs)
    client.api.update_service(service_id, version, **spec)
    converge(client, service_id, inputs, update=True)


def delete_service(client: docker.DockerClient, service_id: str, inputs: dict[str, Any]) -> None:
    """ServiceRemove; with a stop grace period, this engine's task containers are waited for
    (that long) and removed (deleteService)."""
    grace = ((inputs.get("taskSpec") or {}).get("containerSpec") or {}).get("stopGracePeriod")
    seconds = nanoseconds(grace) / 1e9 if grace else 0.0
    containers = []
    if seconds > 0:
        for task in client.api.tasks(filters={"service": service_id}):
            container = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
            if task["Status"]["State"] != "shutdown" and container:
                containers.append(container)
    client.api.remove_service(service_id)
    # Swarm removes a removed service's task containers; gone already, or on another node (not
    # the connected engine's), is fine. One not removed within the grace period fails the delete.
    for container in containers:
        try:
            client.api.wait(container, timeout=seconds, condition="removed")
        except docker.errors.NotFound:
            continue
        except requests.RequestException:
            raise ServiceFailed(
                f"error on wait for container with ID '{container}': context deadline exceeded"
            ) from None
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container, force=True, v=True)


def create_secret(client: docker.DockerClient, inputs: dict[str, Any]) -> str:
    """SecretCreate; `data` is standard base64, as the provider requires."""
    data = base64.b64decode(inputs["data"], validate=True)
    created = client.api.create_secret(inputs["name"], data, labels=_labels(inputs.get("labels")))
    return str(created["ID"])
