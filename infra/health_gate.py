"""ContainerHealthy: a deploy step that waits until a container reports healthy, and otherwise
fails the deployment with what a user needs to fix it. ServiceRolledOut: the same for a Swarm
service's rollout.

pulumi-docker's own `wait` fails with "container failed to be in healthy state" and nothing
more, and only once its timeout runs out. This step reads the same Docker health status, fails
as soon as Docker calls the container unhealthy (its image's health check failed all its
retries after the start period) or the deadline passes, and says which container, its state,
the last health check's exit code and output, and its last log lines.

pulumi-docker's Service waits for as many running tasks as replicas (`converge_config`), and
counts old and new tasks alike: during a rolling update that holds from the start, so `pulumi
up` returns while Swarm is still rolling, and a release that Swarm then rolls back by itself
goes unreported (terraform-provider-docker v4.5.0, resource_docker_service_funcs.go,
resourceDockerServiceUpdateRefreshFunc and replicatedConsoleLogUpdater.update). ServiceRolledOut
waits until Swarm says the update is over and every running task runs the service's spec, and
fails when Swarm rolled it back or paused it, with the tasks' errors.

Pulumi dynamic resources: they run where `pulumi up` runs and ask the Docker engine that
pulumi-docker deploys to (`docker:host`, with its TLS material, else DOCKER_HOST, else the local
socket) through the Docker SDK for Python. Each is replaced whenever what it waits for changes,
so every new container or rollout is waited for; they have nothing to delete.
"""

from typing import Any

import pulumi
import pulumi.dynamic


class HealthWait(pulumi.dynamic.ResourceProvider):
    """The dynamic provider. Pulumi pickles it into the state and runs it in a process of its
    own, so it is self-contained: its imports are inside its methods, and it is pickled by value
    (see the end of this module), not by a reference to a module that process can't import."""

    POLL_SECONDS = 1.0
    LOG_LINES = 10

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        HealthWait.wait(
            props.get("docker_host"),
            props["container_id"],
            props["timeout"],
            props.get("docker_tls"),
        )
        return pulumi.dynamic.CreateResult(id_=props["container_id"], outs=props)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        # The pickled provider itself (`__provider`) is not the resource's business.
        changed = [k for k in news if not k.startswith("__") and olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=changed, delete_before_replace=False
        )

    @staticmethod
    def client(docker_host: str | None, tls: dict[str, str] | None = None) -> Any:
        """A client of the engine pulumi-docker deploys to: its host, and for tcp:// with TLS
        its CA, certificate and key (PEM); ssh:// through the ssh command, as docker's CLI."""
        import os  # noqa: PLC0415 (self-contained: see the class)
        import tempfile  # noqa: PLC0415

        import docker  # noqa: PLC0415
        import docker.tls  # noqa: PLC0415

        if not docker_host:
            return docker.from_env()
        if docker_host.startswith("ssh://"):
            return docker.DockerClient(base_url=docker_host, use_ssh_client=True)
        if not tls:
            return docker.DockerClient(base_url=docker_host)
        folder = tempfile.mkdtemp(prefix="docker-tls-")
        for name in ("ca", "cert", "key"):
            path = os.path.join(folder, f"{name}.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
                file.write(tls[name])
        config = docker.tls.TLSConfig(
            client_cert=(f"{folder}/cert.pem", f"{folder}/key.pem"),
            ca_cert=f"{folder}/ca.pem",
            verify=True,
        )
        # A fixed API version (Docker 20.10's, served by newer engines too): the client asks
        # nothing before trust_env is off (requests would verify by REQUESTS_CA_BUNDLE, where
        # set, rather than the engine's CA).
        url = docker_host.replace("tcp://", "https://")
        client = docker.DockerClient(base_url=url, tls=config, version="1.41")
        client.api.trust_env = False
        # The key's file goes when the client does (HealthWait.close).
        client.tls_folder = folder
        return client

    @staticmethod
    def close(client: Any) -> None:
        """Close the client, and remove the TLS material it was given, if any, from disk."""
        import shutil  # noqa: PLC0415 (self-contained: see the class)

        client.close()
        folder = getattr(client, "tls_folder", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def wait(
        docker_host: str | None,
        container_id: str,
        timeout: float,
        tls: dict[str, str] | None = None,
    ) -> None:
        """Return once Docker reports the container healthy; raise RuntimeError, with a report,
        once Docker reports it unhealthy (or it has no health check) or `timeout` has passed."""
        import time  # noqa: PLC0415 (self-contained: see the class)

        client = HealthWait.client(docker_host, tls)
        try:
            deadline = time.monotonic() + timeout
            while True:
                container = client.containers.get(container_id)
                status = (container.attrs["State"].get("Health") or {}).get("Status")
                if status == "healthy":
                    return
                if status == "starting" and time.monotonic() < deadline:
                    time.sleep(HealthWait.POLL_SECONDS)
                    continue
                verdict = {
                    None: "has no health check",
                    "unhealthy": "is unhealthy",
                    "starting": f"is not healthy after {timeout:.0f} s",
                }[status]
                raise RuntimeError(f"{verdict}: {HealthWait.report(container)}")
        finally:
            HealthWait.close(client)

    @staticmethod
    def report(container: Any) -> str:
        """A container's state, last health check and last log lines."""
        state = container.attrs["State"]
        health = state.get("Health") or {}
        last = (health.get("Log") or [{}])[-1]
        logs = container.logs(tail=HealthWait.LOG_LINES).decode(errors="replace").rstrip()
        return (
            f"container {container.name} ({state.get('Status')},"
            f" restarted {container.attrs.get('RestartCount', 0)} times)\n"
            f"last health check: exit {last.get('ExitCode', '-')}:"
            f" {str(last.get('Output', '')).strip() or '(no output)'}\n"
            f"last {HealthWait.LOG_LINES} log lines:\n{logs}"
        )


class ContainerHealthy(pulumi.dynamic.Resource):
    """Done once the container is healthy; fails the deployment, saying why, otherwise."""

    container_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        container_id: pulumi.Input[str],
        timeout: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            HealthWait(),
            name,
            {
                "container_id": container_id,
                "timeout": timeout,
                **engine_connection(),
            },
            opts,
        )


class RolloutWait(HealthWait):
    """The dynamic provider of ServiceRolledOut."""

    TASK_ERRORS = 5

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        client = HealthWait.client(props.get("docker_host"), props.get("docker_tls"))
        try:
            RolloutWait.wait_rollout(client, props["service_id"], props["image"], props["timeout"])
        finally:
            HealthWait.close(client)
        return pulumi.dynamic.CreateResult(id_=props["service_id"], outs=props)

    @staticmethod
    def wait_rollout(client: Any, service_id: str, image: str, timeout: float) -> None:
        """Return once the service's update is over, with every slot running a task of the
        declared `image`; raise RuntimeError, with Swarm's message and the tasks' errors, when
        Swarm rolled the update back or paused it, or `timeout` has passed."""
        import time  # noqa: PLC0415 (self-contained: see HealthWait)

        deadline = time.monotonic() + timeout
        while True:
            service = client.api.inspect_service(service_id)
            spec = service["Spec"]
            declared = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            status = service.get("UpdateStatus") or {}
            state = status.get("State")
            tasks = client.api.tasks(filters={"service": service_id, "desired-state": "running"})
            current = [
                task
                for task in tasks
                if task["Status"]["State"] == "running"
                and task["Spec"]["ContainerSpec"]["Image"]
                == spec["TaskTemplate"]["ContainerSpec"]["Image"]
            ]
            over = state not in ("updating", "rollback_started")
            if over and len(current) == spec["Mode"]["Replicated"]["Replicas"]:
                if declared == image:
                    return
                verdict = f"Swarm rolled the update back ({state}: {status.get('Message', '')})"
            elif state in ("paused", "rollback_paused"):
                verdict = f"Swarm paused the update ({state}: {status.get('Message', '')})"
            elif time.monotonic() < deadline:
                time.sleep(HealthWait.POLL_SECONDS)
                continue
            else:
                verdict = f"the rollout is not over after {timeout:.0f} s ({state})"
            raise RuntimeError(
                f"service {spec['Name']}: {verdict}\n{RolloutWait.task_errors(client, service_id)}"
            )

    @staticmethod
    def task_errors(client: Any, service_id: str) -> str:
        """The last failed tasks' states and errors."""
        failed = [
            task
            for task in client.api.tasks(filters={"service": service_id})
            if task["Status"].get("Err") or task["Status"]["State"] in ("failed", "rejected")
        ]
        failed.sort(key=lambda task: task["Status"]["Timestamp"], reverse=True)
        lines = [
            f"task {task['ID'][:12]} ({task['Spec']['ContainerSpec']['Image'][:60]}):"
            f" {task['Status']['State']}: {task['Status'].get('Err', '')}"
            for task in failed[: RolloutWait.TASK_ERRORS]
        ]
        # The service's last log lines, from every node (what a failed task printed).
        logs = client.api.service_logs(
            service_id, stdout=True, stderr=True, tail=HealthWait.LOG_LINES
        )
        text = b"".join(logs).decode(errors="replace").rstrip()
        return (
            "last failed tasks:\n"
            + ("\n".join(lines) or "(none)")
            + f"\nlast {HealthWait.LOG_LINES} log lines of the service:\n{text}"
        )


class ServiceRolledOut(pulumi.dynamic.Resource):
    """Done once Swarm has rolled the service out (every task running `image`, healthy); fails
    the deployment, saying why, when Swarm rolled it back or paused it. Replaced, and so run
    again, whenever `revision` (what the service was declared with) changes."""

    def __init__(
        self,
        name: str,
        service_id: pulumi.Input[str],
        image: pulumi.Input[str],
        revision: pulumi.Input[str],
        timeout: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            RolloutWait(),
            name,
            {
                "service_id": service_id,
                "image": image,
                "revision": revision,
                "timeout": timeout,
                **engine_connection(),
            },
            opts,
        )


def engine_connection() -> dict[str, Any]:
    """The engine pulumi-docker deploys to (docker:host; None: DOCKER_HOST or the local
    socket), and for tcp:// with TLS its material (a secret)."""
    docker_config = pulumi.Config("docker")
    connection: dict[str, Any] = {"docker_host": docker_config.get("host")}
    material = {
        "ca": docker_config.get("caMaterial"),
        "cert": docker_config.get("certMaterial"),
        "key": docker_config.get_secret("keyMaterial"),
    }
    if all(value is not None for value in material.values()):
        connection["docker_tls"] = pulumi.Output.secret(material)
    return connection


# dill (Pulumi's pickler) stores a class or function by reference to its module unless it
# belongs to __main__; the provider's process runs elsewhere, without infra/ on its path.
for _provider in (HealthWait, RolloutWait):
    _provider.__module__ = "__main__"
    for _member in vars(_provider).values():
        if callable(_function := getattr(_member, "__func__", _member)):
            _function.__module__ = "__main__"
