"""ContainerHealthy: a deploy step that waits until a container reports healthy, and otherwise
fails the deployment with what a user needs to fix it.

pulumi-docker's own `wait` fails with "container failed to be in healthy state" and nothing
more, and only once its timeout runs out. This step reads the same Docker health status, fails
as soon as Docker calls the container unhealthy (its image's health check failed all its
retries after the start period) or the deadline passes, and says which container, its state,
the last health check's exit code and output, and its last log lines.

A Pulumi dynamic resource: it runs where `pulumi up` runs and asks the Docker engine that
pulumi-docker deploys to (`docker:host`, else DOCKER_HOST, else the local socket) through the
Docker SDK for Python. It is replaced whenever its container is, so every new container is
waited for; it has nothing to delete.
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
        HealthWait.wait(props.get("docker_host"), props["container_id"], props["timeout"])
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
    def wait(docker_host: str | None, container_id: str, timeout: float) -> None:
        """Return once Docker reports the container healthy; raise RuntimeError, with a report,
        once Docker reports it unhealthy (or it has no health check) or `timeout` has passed."""
        import time  # noqa: PLC0415 (self-contained: see the class)

        import docker  # noqa: PLC0415

        client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
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
            client.close()

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
                # The engine pulumi-docker deploys to (None: DOCKER_HOST or the local socket).
                "docker_host": pulumi.Config("docker").get("host"),
            },
            opts,
        )


# dill (Pulumi's pickler) stores a class or function by reference to its module unless it
# belongs to __main__; the provider's process runs elsewhere, without infra/ on its path.
HealthWait.__module__ = "__main__"
for _member in vars(HealthWait).values():
    if callable(_function := getattr(_member, "__func__", _member)):
        _function.__module__ = "__main__"
