"""An exposure check of one running container, in the spirit of the CIS Docker Benchmark's
runtime section (5.x): what the engine says it applied, and what its processes actually have
(read from /proc on the host, so the tests must share the engine's PID namespace, as root).

`violations(container, settings)` lists every violation; an empty list means it passed.
"""

from pathlib import Path

from docker.models.containers import Container

import contract
from settings import Settings

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Host paths no container of the stack may mount (CIS 5.5).
SENSITIVE_HOST_PATHS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var/run")
NO_NEW_PRIVILEGES = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}


def violations(container: Container, settings: Settings) -> list[str]:
    """Every way `container` breaks the stack's rules; empty when it breaks none."""
    container.reload()
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    role = container.labels.get(contract.LABEL_ROLE)
    found: list[str] = []

    def check(ok: object, problem: str) -> None:
        if not ok:
            found.append(problem)

    user = str(config.get("User") or "")
    check(
        user and user.split(":", maxsplit=1)[0] not in {"0", "root"},
        f"runs as root (User={user!r})",
    )
    check(host.get("ReadonlyRootfs"), "root filesystem is writable")
    check(not host.get("CapAdd"), f"capabilities added: {host.get('CapAdd')}")
    check("ALL" in (host.get("CapDrop") or []), f"not all capabilities dropped: {host['CapDrop']}")
    opts = set(host.get("SecurityOpt") or [])
    check(opts & NO_NEW_PRIVILEGES, f"no-new-privileges not set: {sorted(opts)}")
    check(not host.get("Privileged"), "privileged")

    memory_mb = {contract.ROLE_API: settings.api_memory_mb}
    memory_mb[contract.ROLE_PROXY] = settings.proxy_memory_mb
    check(role in memory_mb, f"no known role label ({contract.LABEL_ROLE}={role!r})")
    expected = memory_mb.get(role, 0) * 2**20
    check(host.get("Memory") == expected, f"memory limit {host.get('Memory')}, not {expected}")
    # pulumi-docker has no pids limit: each image lowers RLIMIT_NPROC itself (PROCESS_LIMIT),
    # which every process it starts inherits: read from its main process.
    limit = settings.process_limit
    soft, hard = process_limit(container.attrs["State"]["Pid"])
    check(
        soft == hard == str(limit) or (host.get("PidsLimit") or 0) > 0,
        f"no process limit (max processes {soft}/{hard}, not {limit};"
        f" PidsLimit {host.get('PidsLimit')})",
    )

    for namespace in ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode"):
        check(host.get(namespace) != "host", f"shares the host's namespace ({namespace}=host)")
    for mount in container.attrs.get("Mounts") or []:
        source = str(mount.get("Source") or "")
        check(source not in DOCKER_SOCKETS, f"docker socket mounted ({source})")
        if mount.get("Type") == "bind":
            check(
                source.rstrip("/") not in {p.rstrip("/") for p in SENSITIVE_HOST_PATHS},
                f"sensitive host path mounted ({source})",
            )

    test = (config.get("Healthcheck") or {}).get("Test") or []
    check(test and test != ["NONE"], f"no health check ({test})")

    published = {
        port: [(b["HostIp"], b["HostPort"]) for b in bindings]
        for port, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
        if bindings
    }
    if role == contract.ROLE_PROXY:
        served = contract.PROXY_HTTPS_PORT if settings.tls.enabled else contract.PROXY_HTTP_PORT
        wanted = {f"{served}/tcp": [(settings.proxy_bind_address, str(settings.proxy_port))]}
        check(published == wanted, f"published {published}, not only {wanted}")
    else:
        check(not published, f"API ports published: {published}")

    found += process_violations(container)
    return found


def process_limit(pid: int) -> tuple[str, str]:
    """A process's RLIMIT_NPROC, soft and hard, as /proc/<pid>/limits writes them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max processes"):
            soft, hard = line.split()[2:4]
            return soft, hard
    raise AssertionError(f"/proc/{pid}/limits has no Max processes line")


def process_violations(container: Container) -> list[str]:
    """What the container's processes really run with: uid, capabilities, no_new_privs."""
    found = []
    for pid, command in container.top(ps_args="-o pid,comm")["Processes"] or []:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue  # gone since the listing (a worker replaced)
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uids = fields["Uid"].split()
        what = f"process {pid} ({command})"
        if "0" in uids:
            found.append(f"{what} runs as uid 0 ({uids})")
        if int(fields["CapEff"].strip(), 16):
            found.append(f"{what} has effective capabilities {fields['CapEff'].strip()}")
        if fields.get("NoNewPrivs", "0").strip() != "1":
            found.append(f"{what} may gain privileges (NoNewPrivs 0)")
    return found
