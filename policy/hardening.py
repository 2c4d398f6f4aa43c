"""The stack's hardening as CrossGuard policies, over what the program declares.

Every Docker container must run as a non-root user, on a read-only root filesystem, with all
capabilities dropped and none added, `no-new-privileges`, a memory limit, not privileged, in
none of the host's network, PID or IPC namespaces, with neither the Docker socket nor the
host's root mounted, publishing ports only on the stack's `proxyBindAddress`, with a health
check, and its image referenced by digest. Swarm services are refused until the pack checks
them too. Each message names the resource and what to change in the program.

Container rules read the container's inputs (`pulumi preview` knows them before anything is
created; one that comes from another resource's output, such as the image's ID on a first
deploy, is only known at `pulumi up`, where the rule runs again before the container is
created). The health check is a stack rule: the program takes it from the image's Dockerfile,
so it follows the container's image to the image resource that builds it.
"""

import ipaddress
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import yaml
from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

CONTAINER: Final = "docker:index/container:Container"
IMAGE: Final = "docker:index/image:Image"
SERVICE: Final = "docker:index/service:Service"

PROJECT_DIR: Final = Path(__file__).resolve().parent.parent
# Where the program runs (Pulumi.yaml's `main`): the images' build paths are relative to it.
PROGRAM_DIR: Final = PROJECT_DIR / str(
    yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text()).get("main", ".")
)
# The program's own settings module reads the stack's config (the pack gets the stack's config
# as the program does): the configured bind address, validated and written as Docker writes it.
sys.path.append(str(PROGRAM_DIR))
from settings import load_settings  # noqa: E402

DOCKER_SOCKETS: Final = (PurePosixPath("/var/run/docker.sock"), PurePosixPath("/run/docker.sock"))
DIGEST: Final = re.compile(r"(?:^|@)sha256:[0-9a-f]{64}$")

Props = Mapping[str, Any]


def _user(props: Props) -> Iterator[str]:
    user = str(props.get("user") or "")
    if user.split(":", 1)[0] in {"", "0", "root"}:
        who = f"user {user!r}" if user else "its image's user"
        yield f'runs as {who}: set user to a non-root uid:gid, e.g. user="10001:10001"'


def _read_only(props: Props) -> Iterator[str]:
    if props.get("readOnly") is not True:
        yield "has a writable root filesystem: set read_only=True (with a tmpfs where it writes)"


def _capabilities(props: Props) -> Iterator[str]:
    capabilities = props.get("capabilities") or {}
    if "ALL" not in {str(name).upper() for name in capabilities.get("drops") or []}:
        yield (
            "keeps Docker's default capabilities: set"
            ' capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"])'
        )
    if added := list(capabilities.get("adds") or []):
        yield f"adds capabilities {added}: remove capabilities.adds"


def _no_new_privileges(props: Props) -> Iterator[str]:
    options = {str(option).replace(":", "=") for option in props.get("securityOpts") or []}
    if not options & {"no-new-privileges", "no-new-privileges=true"}:
        yield 'may gain privileges: add "no-new-privileges=true" to security_opts'


def _memory(props: Props) -> Iterator[str]:
    if not (props.get("memory") or 0) > 0:
        yield "has no memory limit: set memory (MiB)"


def _not_privileged(props: Props) -> Iterator[str]:
    if props.get("privileged") is True:
        yield "runs privileged: remove privileged=True"


def _namespaces(props: Props) -> Iterator[str]:
    for key, argument, what in (
        ("networkMode", "network_mode", "network"),
        ("pidMode", "pid_mode", "PID"),
        ("ipcMode", "ipc_mode", "IPC"),
    ):
        if props.get(key) == "host":
            yield f'shares the host\'s {what} namespace: remove {argument}="host"'


def _exposes_host(source: str) -> bool:
    """The host's root, the Docker socket, or a directory holding it."""
    path = PurePosixPath(source)
    return path == PurePosixPath("/") or any(
        path == socket or path in socket.parents for socket in DOCKER_SOCKETS
    )


def _mounts(props: Props) -> Iterator[str]:
    bound = [
        str(mount.get("source") or "")
        for mount in props.get("mounts") or []
        if mount.get("type") == "bind"
    ]
    bound += [str(volume.get("hostPath") or "") for volume in props.get("volumes") or []]
    for source in bound:
        if source and _exposes_host(source):
            yield f"mounts the host's {source}: remove that mount (it gives control of the host)"


def _ports(props: Props) -> Iterator[str]:
    bind = load_settings().proxy_bind_address
    if props.get("publishAllPorts") is True:
        yield "publishes every exposed port on all interfaces: remove publish_all_ports=True"
    for port in props.get("ports") or []:
        declared = port.get("ip")
        ip = str(declared or "0.0.0.0")  # noqa: S104 (Docker's default, which is the point)
        if ipaddress.ip_address(ip) != ipaddress.ip_address(bind):
            where = ip if declared else "all interfaces (no ip given)"
            external = port.get("external")  # a number arrives as a float
            number = int(external) if isinstance(external, int | float) else "(any)"
            yield (
                f"publishes port {number} on {where}, not on proxyBindAddress {bind}:"
                " set ip=settings.proxy_bind_address"
            )


def _digest(props: Props) -> Iterator[str]:
    image = str(props.get("image") or "")
    if not DIGEST.search(image):
        yield (
            f"uses image {image!r}, which a new image under that name changes silently:"
            " reference it by ID or digest (image=<docker.Image>.repo_digest, or name@sha256:...)"
        )


@dataclass(frozen=True)
class ContainerRule:
    name: str
    description: str
    # What to change, one line per problem; none when the container complies.
    check: Callable[[Props], Iterator[str]]


CONTAINER_RULES: Final = (
    ContainerRule("non-root-user", "Containers run as a non-root user.", _user),
    ContainerRule("read-only-root", "Containers have a read-only root filesystem.", _read_only),
    ContainerRule(
        "drop-all-capabilities", "Containers drop all capabilities, add none.", _capabilities
    ),
    ContainerRule("no-new-privileges", "Containers set no-new-privileges.", _no_new_privileges),
    ContainerRule("memory-limit", "Containers have a memory limit.", _memory),
    ContainerRule("not-privileged", "Containers are not privileged.", _not_privileged),
    ContainerRule(
        "no-host-namespaces", "Containers share no host network, PID or IPC namespace.", _namespaces
    ),
    ContainerRule(
        "no-host-mounts", "Containers mount neither the Docker socket nor the host root.", _mounts
    ),
    ContainerRule("ports-on-bind-address", "Ports are published on proxyBindAddress only.", _ports),
    ContainerRule("image-by-digest", "Containers reference their image by digest.", _digest),
)


def _container_validator(rule: ContainerRule) -> Callable[[ResourceValidationArgs, Any], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == CONTAINER:
            for problem in rule.check(args.props):
                report_violation(f"container {args.name} {problem}", None)

    return validate


def _service_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == SERVICE:
        report_violation(
            f"service {args.name}: this pack checks containers only; extend policy/hardening.py"
            " to check Swarm services before declaring one",
            None,
        )


def dockerfile_of(image: Props) -> Path:
    """The Dockerfile an image resource builds from. Its inputs (what preview and the mock
    runtime see) have `build`; after a deploy, pulumi-docker's outputs have `context` and
    `dockerfile` relative to it. Relative paths are from the program's directory."""
    build = image.get("build")
    if isinstance(build, Mapping):
        context = str(build.get("context") or ".")
        path = str(build.get("dockerfile") or f"{context}/Dockerfile")
    else:
        path = f"{image.get('context') or '.'}/{image.get('dockerfile') or 'Dockerfile'}"
    return PROGRAM_DIR / path


def final_healthcheck(dockerfile: str) -> str | None:
    """The HEALTHCHECK of a Dockerfile's last stage (what its image runs), or None."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    healthcheck = None
    for line in joined.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            healthcheck = None
        elif instruction.upper() == "HEALTHCHECK":
            healthcheck = rest.strip()
    return healthcheck


def _declared_healthcheck(container: PolicyResource) -> Props | None:
    """The container's own health check; None when it has none (at preview, a computed value
    the provider reads back later is unknown: the container declared none)."""
    try:
        declared = container.props.get("healthcheck")
    except UnknownValueError:
        return None
    return declared if isinstance(declared, Mapping) else None


def _health_problems(container: PolicyResource) -> Iterator[str]:
    declared = _declared_healthcheck(container)
    if declared is not None:
        tests = list(declared.get("tests") or [])
        if not tests or str(tests[0]).upper() == "NONE":
            yield f"disables its health check ({tests}): remove healthcheck, or give it a test"
        return
    images = [
        r for r in container.property_dependencies.get("image", []) if r.resource_type == IMAGE
    ]
    if not images:
        yield (
            "has no health check the stack can see (its image is not built here): declare"
            " healthcheck=docker.ContainerHealthcheckArgs(tests=[...])"
        )
    for image in images:
        dockerfile = dockerfile_of(image.props)
        try:
            healthcheck = final_healthcheck(dockerfile.read_text())
        except OSError as error:
            yield f"has an image whose Dockerfile can't be read ({error}): its health is unknown"
            continue
        if healthcheck is None or healthcheck.upper().startswith("NONE"):
            shown = dockerfile.resolve()
            shown = shown.relative_to(PROJECT_DIR) if shown.is_relative_to(PROJECT_DIR) else shown
            yield f"has no health check: add a HEALTHCHECK to the last stage of {shown}"


def _health_validator(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for resource in args.resources:
        if resource.resource_type == CONTAINER:
            for problem in _health_problems(resource):
                report_violation(f"container {resource.name} {problem}", resource.urn)


POLICIES: Final[Sequence[ResourceValidationPolicy | StackValidationPolicy]] = (
    *(
        ResourceValidationPolicy(rule.name, rule.description, _container_validator(rule))
        for rule in CONTAINER_RULES
    ),
    StackValidationPolicy(
        "health-check",
        "Containers have a health check, their own or their image's.",
        _health_validator,
    ),
    ResourceValidationPolicy(
        "no-unchecked-swarm-services",
        "Swarm services wait for rules of their own.",
        _service_validator,
    ),
)
