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
pulumi-docker deploys to through the Docker SDK for Python, reached as pulumi-docker reaches it:
every connection setting of its provider, each falling back to its environment variable as the
provider's does (CONNECTION_SETTINGS); settings it would refuse, and a TLS connection it would
make without verifying the engine's certificate, are refused before anything is created
(settings.load_settings). Each is replaced whenever what it waits for changes, so every new
container or rollout is waited for; they have nothing to delete.
"""

import json
import os
import pwd
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from config_problems import ConfigProblem


class HealthWait(pulumi.dynamic.ResourceProvider):
    """The dynamic provider. Pulumi pickles it into the state and runs it in a process of its
    own, so it is self-contained: its imports are inside its methods, and it is pickled by value
    (see the end of this module), not by a reference to a module that process can't import."""

    POLL_SECONDS = 1.0
    LOG_LINES = 10

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        HealthWait.wait(props, props["container_id"], props["timeout"])
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
    def client(connection: dict[str, Any]) -> Any:
        """A client of the engine pulumi-docker deploys to, from the connection that
        engine_connection() resolved: its host (the local socket when None); for TLS the
        engine's CA, the client's certificate and key, as PEM (docker_tls) or as ca.pem,
        cert.pem and key.pem in a folder (docker_cert_path); for ssh:// the ssh command, with
        the provider's extra flags (docker_ssh_opts)."""
        import os  # noqa: PLC0415 (self-contained: see the class)
        import tempfile  # noqa: PLC0415

        import docker  # noqa: PLC0415
        import docker.tls  # noqa: PLC0415

        host = connection.get("docker_host") or "unix:///var/run/docker.sock"
        material, folder = connection.get("docker_tls"), connection.get("docker_cert_path")
        if material:
            folder = tempfile.mkdtemp(prefix="docker-tls-")
            for name in ("ca", "cert", "key"):
                path = os.path.join(folder, f"{name}.pem")
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
                    file.write(material[name])
        if folder:
            config = docker.tls.TLSConfig(
                client_cert=(f"{folder}/cert.pem", f"{folder}/key.pem"),
                ca_cert=f"{folder}/ca.pem",
                verify=True,
            )
            # A fixed API version (Docker 20.10's, served by newer engines too): the client
            # asks nothing before trust_env is off (requests would verify by
            # REQUESTS_CA_BUNDLE, where set, rather than the engine's CA).
            url = host.replace("tcp://", "https://")
            client = docker.DockerClient(base_url=url, tls=config, version="1.41")
            client.api.trust_env = False
            if material:  # The key's file goes when the client does (HealthWait.close).
                client.tls_folder = folder
            return client
        if host.startswith("ssh://"):
            # The version fixed too: the client asks nothing through docker-py's own ssh
            # connection, which takes no flags, before the one with them is mounted.
            client = docker.DockerClient(base_url=host, use_ssh_client=True, version="1.41")
            flags = connection.get("docker_ssh_opts")
            if flags:
                client.api.mount("http+docker://ssh", HealthWait.ssh_adapter(host, flags))
            return client
        return docker.DockerClient(base_url=host)

    @staticmethod
    def ssh_adapter(host: str, flags: list[str]) -> Any:
        """docker-py's ssh transport (`ssh ... -- host docker system dial-stdio`, as docker's
        CLI and pulumi-docker run it), with `flags` before the destination as pulumi-docker
        puts docker:sshOpts. docker-py has no place for them: its socket's connect() builds
        the command; this one's adds them."""
        import contextlib  # noqa: PLC0415 (self-contained: see the class)
        import signal  # noqa: PLC0415
        import socket  # noqa: PLC0415
        import subprocess  # noqa: PLC0415

        from docker.transport import sshconn  # noqa: PLC0415

        class Socket(sshconn.SSHSocket):
            def connect(self, **_: Any) -> None:
                login = ["-l", self.user] if self.user else []
                port = ["-p", self.port] if self.port else []
                command = ["ssh", *flags, *login, *port, "--", self.host]
                self.proc = subprocess.Popen(  # noqa: S603 (the user's flags, as pulumi-docker's)
                    [*command, "docker system dial-stdio"],
                    stdout=subprocess.PIPE,
                    stdin=subprocess.PIPE,
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
                )

            def close(self) -> None:
                # docker-py's leaves ssh unwaited for, its pipes and the socket itself open.
                if self.proc:
                    with contextlib.suppress(OSError):
                        super().close()
                    self.proc.kill()
                    self.proc.communicate()
                socket.socket.close(self)

        class Connection(sshconn.SSHConnection):
            def connect(self) -> None:
                sock = Socket(self.ssh_host)
                sock.settimeout(self.timeout)
                sock.connect()
                self.sock = sock

        class Pool(sshconn.SSHConnectionPool):
            def _new_conn(self) -> Connection:
                return Connection(None, self.timeout, self.ssh_host)

        class Adapter(sshconn.SSHHTTPAdapter):
            def get_connection(self, url: str, proxies: Any = None) -> Pool:
                return Pool(timeout=self.timeout, maxsize=self.max_pool_size, host=self.ssh_host)

        return Adapter(host, shell_out=True)

    @staticmethod
    def close(client: Any) -> None:
        """Close the client, and remove the TLS material it was given, if any, from disk."""
        import shutil  # noqa: PLC0415 (self-contained: see the class)

        client.close()
        folder = getattr(client, "tls_folder", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def wait(connection: dict[str, Any], container_id: str, timeout: float) -> None:
        """Return once Docker reports the container healthy; raise RuntimeError, with a report,
        once Docker reports it unhealthy (or it has no health check) or `timeout` has passed."""
        import time  # noqa: PLC0415 (self-contained: see the class)

        client = HealthWait.client(connection)
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
        client = HealthWait.client(props)
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


# pulumi-docker's provider settings that say which engine and how to reach it, and the
# environment variable each falls back to (terraform-provider-docker v4.5.0, which
# pulumi-docker 5 bridges: internal/provider/provider.go, New and configure; config.go,
# MakeClient). The provider's other settings (registryAuth, disableDockerDaemonCheck) don't.
CONNECTION_SETTINGS: dict[str, str] = {
    "host": "DOCKER_HOST",
    "context": "DOCKER_CONTEXT",
    "certMaterial": "DOCKER_CERT_MATERIAL",
    "keyMaterial": "DOCKER_KEY_MATERIAL",
    "caMaterial": "DOCKER_CA_MATERIAL",
    "certPath": "DOCKER_CERT_PATH",
    "sshOpts": "DOCKER_SSH_OPTS",
}
CERT_PATH_FILES = ("ca.pem", "cert.pem", "key.pem")


def resolve_connection(
    configured: Callable[[str], str | None], env: Mapping[str, str], home: Path
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """How pulumi-docker reaches its engine, from its settings (`configured("host")`: the
    text of docker:host, None when unset) and `env`, as the provider resolves them; and every
    problem, naming its key, with what the health gates can't honour. `home` holds the docker
    CLI's contexts (.docker/contexts/meta)."""
    value = {
        key: configured(key) or env.get(variable) or None
        for key, variable in CONNECTION_SETTINGS.items()
    }
    connection: dict[str, Any] = {"docker_host": value["host"]}
    problems: list[ConfigProblem] = []
    if value["context"]:  # The provider takes a context's host over docker:host.
        host = _context_host(home, value["context"])
        if host is None:
            problems.append(
                ConfigProblem("docker:context", f"no docker context {value['context']!r} in {home}")
            )
        connection["docker_host"] = host
    # The provider's order: key material, else certPath, else ssh, else plain.
    if value["certMaterial"] or value["keyMaterial"]:
        problems += [
            ConfigProblem(
                f"docker:{key}",
                "missing (pulumi-docker needs certMaterial and keyMaterial together)",
            )
            for key in ("certMaterial", "keyMaterial")
            if not value[key]
        ]
        if value["certPath"]:
            problems.append(
                ConfigProblem(
                    "docker:certPath", "not with certMaterial (pulumi-docker refuses both)"
                )
            )
        if not value["caMaterial"]:
            problems.append(
                ConfigProblem(
                    "docker:caMaterial",
                    "missing: without it pulumi-docker does not verify the engine's certificate,"
                    " and the health gates connect to no engine unverified",
                )
            )
        connection["docker_tls"] = {
            "ca": value["caMaterial"],
            "cert": value["certMaterial"],
            "key": value["keyMaterial"],
        }
    elif value["certPath"]:
        folder = Path(value["certPath"]).absolute()  # No ~: the provider expands none.
        problems += [
            ConfigProblem(
                "docker:certPath", f"no {name} in {folder} (it needs {', '.join(CERT_PATH_FILES)})"
            )
            for name in CERT_PATH_FILES
            if not (folder / name).is_file()
        ]
        connection["docker_cert_path"] = str(folder)
    elif (connection["docker_host"] or "").startswith("ssh://") and value["sshOpts"]:
        flags = _ssh_flags(value["sshOpts"], from_env=not configured("sshOpts"))
        if flags is None:
            problems.append(
                ConfigProblem(
                    "docker:sshOpts",
                    "not a list of ssh's flags, e.g. "
                    '["-i", "/home/me/.ssh/deploy", "-o", "StrictHostKeyChecking=yes"]',
                )
            )
        connection["docker_ssh_opts"] = flags
    return connection, problems


def _context_host(home: Path, name: str) -> str | None:
    """The engine a docker CLI context names, as the provider reads it (getContextHost)."""
    for meta in sorted((home / ".docker" / "contexts" / "meta").glob("*/meta.json")):
        try:
            context = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(context, dict) and context.get("Name") == name:
            host = (context.get("Endpoints") or {}).get("docker", {}).get("Host")
            return host if isinstance(host, str) else None
    return None


def _ssh_flags(text: str, *, from_env: bool) -> list[str] | None:
    """docker:sshOpts (a list in the stack's config, JSON to the program) or DOCKER_SSH_OPTS
    (split at white space, as the provider splits it); None if it is neither."""
    if from_env:
        return text.split()
    try:
        flags = json.loads(text)
    except ValueError:
        return None
    if isinstance(flags, list) and all(isinstance(flag, str) for flag in flags):
        return flags
    return None


def _configured(key: str) -> str | None:
    """A docker: setting's text, a secret's too (only its presence is judged in the open)."""
    return pulumi.runtime.get_config(f"docker:{key}")


def engine_connection_problems() -> list[ConfigProblem]:
    """What the health gates can't honour of this stack's docker: settings (for
    settings.load_settings, so that they are refused before anything is created)."""
    return resolve_connection(_configured, os.environ, _home())[1]


def engine_connection() -> dict[str, Any]:
    """The engine pulumi-docker deploys to, as resolve_connection finds it: the inputs of a
    health gate (the TLS material a secret)."""
    connection, problems = resolve_connection(_configured, os.environ, _home())
    if problems:
        raise ValueError("\n".join(map(str, problems)))
    if "docker_tls" in connection:
        connection["docker_tls"] = pulumi.Output.secret(connection["docker_tls"])
    return connection


def _home() -> Path:
    # The provider's user.Current().HomeDir: the passwd entry's, not $HOME.
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


# dill (Pulumi's pickler) stores a class or function by reference to its module unless it
# belongs to __main__; the provider's process runs elsewhere, without infra/ on its path.
for _provider in (HealthWait, RolloutWait):
    _provider.__module__ = "__main__"
    for _member in vars(_provider).values():
        if callable(_function := getattr(_member, "__func__", _member)):
            _function.__module__ = "__main__"
