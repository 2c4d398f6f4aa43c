"""The stack's hardening as CrossGuard policies, over what the program declares.

Every Docker container must run as a non-root user (its stack's own uid for its role), on a
read-only root filesystem, with all capabilities dropped and none added, `no-new-privileges`, a
memory limit, not privileged, in
none of the host's network, PID or IPC namespaces, with neither the Docker socket nor the
host's root mounted, publishing ports only on the stack's `proxyBindAddress`, with a health
check, and its image referenced by digest. Every Swarm service must do the same wherever Swarm
can express it (its task's container spec: user, read-only root, capabilities, mounts, image;
its task's memory limit), publish ports in host mode only, and take private keys as Docker
secrets, never in its environment. Each message names the resource and what to change in the
program.

What a service can't be checked for, because Swarm can't express it on this provider
(pulumi-docker 5's service `privileges` hold only `credential_spec` and `se_linux_context`, and
Docker's API has no service no-new-privileges before 1.44): no-new-privileges, for which the
images ship no setuid or setgid program instead. Services have no privileged mode and no host
PID or IPC namespace to check; one attached to the host's network (by that network's ID, which
only the engine knows) is not recognised.

Resource rules read the resource's inputs (`pulumi preview` knows them before anything is
created; one that comes from another resource's output, such as the image's ID on a first
deploy, is only known at `pulumi up`, where the rule runs again before the resource is
created). The health check is a stack rule: the program takes it from the image's Dockerfile,
so it follows each container's or service's image to the image resource that builds it.
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
import contract  # noqa: E402
from instance_specs import stack_users  # noqa: E402
from settings import load_settings  # noqa: E402

DOCKER_SOCKETS: Final = (PurePosixPath("/var/run/docker.sock"), PurePosixPath("/run/docker.sock"))
DIGEST: Final = re.compile(r"(?:^|@)sha256:[0-9a-f]{64}$")

Props = Mapping[str, Any]
# What to change, one line per problem; none when the resource complies.
Check = Callable[[Props], Iterator[str]]


def _user(props: Props) -> Iterator[str]:
    user = str(props.get("user") or "")
    own = _stack_user(props)
    if user.split(":", 1)[0] in {"", "0", "root"}:
        who = f"user {user!r}" if user else "its image's user"
        suggested = own or "uid:gid"
        yield f"runs as {who}: set user to a non-root uid:gid, its stack's: user={suggested!r}"
    elif own is not None and user != own:
        yield (
            f"runs as user {user!r}, not its stack's uid for its role: set user={own!r}"
            " (processLimit counts every process of a uid on the host, so a uid shared with"
            " another stack shares its budget)"
        )


def _stack_user(props: Props) -> str | None:
    """The uid:gid of its stack and role (instance_specs.stack_users), from its labels; None
    when it carries no project, stack and role of the stack's."""
    labels = _labels(props)
    project, stack = labels.get(contract.LABEL_PROJECT), labels.get(contract.LABEL_STACK)
    role = labels.get(contract.LABEL_ROLE)
    if not project or not stack or role not in {contract.ROLE_API, contract.ROLE_PROXY}:
        return None
    return stack_users(f"{project}-{stack}").of(str(role))


def _labels(props: Props) -> dict[Any, Any]:
    return {item.get("label"): item.get("value") for item in props.get("labels") or ()}


def _environment(props: Props) -> dict[str, str]:
    """A container's environment (`envs`, NAME=value lines) or a container spec's (`env`)."""
    env = props.get("env")
    if isinstance(env, Mapping):
        return {str(name): str(value) for name, value in env.items()}
    lines = (str(line).partition("=") for line in props.get("envs") or ())
    return {name: value for name, _, value in lines}


def _api_health_endpoint(props: Props) -> Iterator[str]:
    if _labels(props).get(contract.LABEL_ROLE) != contract.ROLE_API:
        return
    # Unset: the image's own, which is the contract's (service/Dockerfile).
    path = _environment(props).get("API_HEALTH_PATH", contract.API_HEALTH_PATH)
    if path != contract.API_HEALTH_PATH:
        yield (
            f"asks its health on {path!r}, not on the API's own health endpoint: set"
            f" API_HEALTH_PATH={contract.API_HEALTH_PATH} (answered without the app, so its"
            " health checks hold whatever routes the app has)"
        )


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
            yield (
                f"publishes port {_number(port.get('external'))} on {where}, not on"
                f" proxyBindAddress {bind}: set ip=settings.proxy_bind_address"
            )


def _number(port: object) -> int | str:
    """A published port's number (it arrives as a float), or "(any)" when Docker picks it."""
    return int(port) if isinstance(port, int | float) else "(any)"


def _digest(props: Props) -> Iterator[str]:
    image = str(props.get("image") or "")
    if not DIGEST.search(image):
        yield (
            f"uses image {image!r}, which a new image under that name changes silently:"
            " reference it by ID or digest (image=<docker.Image>.repo_digest, or name@sha256:...)"
        )


# Services: Swarm keeps most of a container's settings in the task's container spec, under
# the same names, where the container's check reads them; the rest are checks of their own.


def _container_spec(props: Props) -> Props:
    return (props.get("taskSpec") or {}).get("containerSpec") or {}


def _in_spec(check: Check) -> Check:
    """A container's check, of a service's container spec."""
    return lambda props: check(_container_spec(props))


def _service_capabilities(props: Props) -> Iterator[str]:
    spec = _container_spec(props)
    if "ALL" not in {str(name).upper() for name in spec.get("capDrops") or []}:
        yield 'keeps Docker\'s default capabilities: set cap_drops=["ALL"] in its container_spec'
    if added := list(spec.get("capAdds") or []):
        yield f"adds capabilities {added}: remove cap_adds from its container_spec"


def _service_memory(props: Props) -> Iterator[str]:
    limits = ((props.get("taskSpec") or {}).get("resources") or {}).get("limits") or {}
    if not (limits.get("memoryBytes") or 0) > 0:
        yield "has no memory limit: set task_spec.resources.limits.memory_bytes"


def _host_mode(props: Props) -> Iterator[str]:
    for port in (props.get("endpointSpec") or {}).get("ports") or []:
        if port.get("publishMode") != "host":  # unset: ingress
            yield (
                f"publishes port {_number(port.get('publishedPort'))} through the routing mesh,"
                ' on every node of the swarm: set publish_mode="host" (on the nodes that run it'
                " only, which its placement chooses)"
            )


def _keys_as_secrets(props: Props) -> Iterator[str]:
    for name, value in (_container_spec(props).get("env") or {}).items():
        if "PRIVATE KEY" in str(value):
            yield (
                f"has a private key in its environment ({name}): make it a docker.Secret and"
                " mount it with container_spec.secrets"
            )


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    # Its check of a container and of a Swarm service; None where that kind of resource can't
    # express what the rule guards (the description says so).
    container: Check | None = None
    service: Check | None = None


RULES: Final = (
    Rule(
        "non-root-user",
        "Containers and services run as a non-root user: the stack's own uid for their role.",
        _user,
        _in_spec(_user),
    ),
    Rule(
        "read-only-root",
        "Containers and services have a read-only root filesystem.",
        _read_only,
        _in_spec(_read_only),
    ),
    Rule(
        "drop-all-capabilities",
        "Containers and services drop all capabilities, add none.",
        _capabilities,
        _service_capabilities,
    ),
    Rule(
        "no-new-privileges",
        "Containers set no-new-privileges. Services can't (pulumi-docker's service privileges"
        " have no such field, nor Docker's API before 1.44): their images ship no setuid or"
        " setgid program instead.",
        _no_new_privileges,
    ),
    Rule(
        "memory-limit",
        "Containers and services have a memory limit.",
        _memory,
        _service_memory,
    ),
    Rule(
        "not-privileged",
        "Containers are not privileged (Swarm runs no service privileged).",
        _not_privileged,
    ),
    Rule(
        "no-host-namespaces",
        "Containers share no host network, PID or IPC namespace (services have no such modes).",
        _namespaces,
    ),
    Rule(
        "no-host-mounts",
        "Containers and services mount neither the Docker socket nor the host root.",
        _mounts,
        _in_spec(_mounts),
    ),
    Rule("ports-on-bind-address", "Containers publish ports on proxyBindAddress only.", _ports),
    Rule(
        "ports-in-host-mode",
        "Services publish ports in host mode, on the nodes that run them only: never through"
        " the routing mesh, which opens them on every node of the swarm (and needs IPVS).",
        service=_host_mode,
    ),
    Rule(
        "image-by-digest",
        "Containers and services reference their image by digest.",
        _digest,
        _in_spec(_digest),
    ),
    Rule(
        "api-health-endpoint",
        "API containers and services check their health on the API's own health endpoint"
        " (answered without the app), never on a route of the app.",
        _api_health_endpoint,
        _in_spec(_api_health_endpoint),
    ),
    Rule(
        "keys-as-secrets",
        "Services take private keys as Docker secrets, never in their environment. (On one"
        " engine, which has no secrets, the proxy container moves its key from its environment"
        " to its tmpfs.)",
        service=_keys_as_secrets,
    ),
)


@dataclass(frozen=True)
class Kind:
    """A kind of resource the pack checks."""

    # What messages call one.
    word: str
    # Where it declares its own health check (unset: its image's).
    healthcheck: tuple[str, ...]
    # The input that holds its image, and so depends on the image resource.
    image_input: str
    # What to declare when its image is not built here.
    declare_healthcheck: str


KINDS: Final = {
    CONTAINER: Kind(
        "container",
        ("healthcheck",),
        "image",
        "healthcheck=docker.ContainerHealthcheckArgs(tests=[...])",
    ),
    SERVICE: Kind(
        "service",
        ("taskSpec", "containerSpec", "healthcheck"),
        "taskSpec",
        "healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=[...]) in its"
        " container_spec",
    ),
}


def _validator(rule: Rule) -> Callable[[ResourceValidationArgs, Any], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        check = {CONTAINER: rule.container, SERVICE: rule.service}.get(args.resource_type)
        for problem in check(args.props) if check else ():
            report_violation(f"{KINDS[args.resource_type].word} {args.name} {problem}", None)

    return validate


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


def _declared_healthcheck(resource: PolicyResource, kind: Kind) -> Props | None:
    """The container's or service's own health check; None when it has none (at preview, a
    computed value the provider reads back later is unknown: it declared none)."""
    declared: Any = resource.props
    try:
        for key in kind.healthcheck:
            declared = declared.get(key) if isinstance(declared, Mapping) else None
    except UnknownValueError:
        return None
    return declared if isinstance(declared, Mapping) else None


def _health_problems(resource: PolicyResource, kind: Kind) -> Iterator[str]:
    declared = _declared_healthcheck(resource, kind)
    if declared is not None:
        tests = list(declared.get("tests") or [])
        if not tests or str(tests[0]).upper() == "NONE":
            yield f"disables its health check ({tests}): remove healthcheck, or give it a test"
        return
    images = [
        r
        for r in resource.property_dependencies.get(kind.image_input, [])
        if r.resource_type == IMAGE
    ]
    if not images:
        yield (
            "has no health check the stack can see (its image is not built here): declare"
            f" {kind.declare_healthcheck}"
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
        if kind := KINDS.get(resource.resource_type):
            for problem in _health_problems(resource, kind):
                report_violation(f"{kind.word} {resource.name} {problem}", resource.urn)


POLICIES: Final[Sequence[ResourceValidationPolicy | StackValidationPolicy]] = (
    *(ResourceValidationPolicy(rule.name, rule.description, _validator(rule)) for rule in RULES),
    StackValidationPolicy(
        "health-check",
        "Containers and services have a health check, their own or their image's (a service's"
        " rollout waits for it).",
        _health_validator,
    ),
)
