"""The stack's configuration: one table of keys, read once and validated before any resource is
registered.

`KEYS` is the one list of what a user can set: each key's meaning, what it accepts, its default
and whether it is a secret. `Pulumi.yaml`'s template section, `Pulumi.dev.yaml` and the README's
table are checked against it (tests/template). All problems are reported together, each naming
its key and what it accepts, so a bad `Pulumi.<stack>.yaml` fails `pulumi preview` before
anything is created.
"""

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pulumi
import pulumi.runtime.config

import tls_certificates
from health_gate import engine_connection_problems

# What a key's configured text turns into.
Value = int | bool | str | tuple[str, ...]


@dataclass(frozen=True)
class Key:
    """One config key. `parse` turns the configured text into the value the program uses, or
    raises ValueError saying what was wrong and what is accepted."""

    name: str
    meaning: str
    # What a value must be, as error messages say it.
    accepted: str
    parse: Callable[[str], Value]
    # None: unset unless configured (the program then decides, e.g. the Dockerfile's base image).
    default: Value | None = None
    # Set with `pulumi config set --secret`: `pulumi new` asks for it hidden and encrypts it, and
    # no message shows its value. Whoever uses it passes it on as pulumi.Output.secret.
    secret: bool = False

    @property
    def field(self) -> str:
        """The Settings field: proxyPort -> proxy_port."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def default_text(self) -> str | None:
        """The default as a stack file or `pulumi new` writes it (the text `parse` reads)."""
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, tuple):
            return json.dumps(list(self.default))
        return str(self.default)


def integer(name: str, default: int, low: int, high: int, meaning: str) -> Key:
    accepted = f"a whole number from {low} to {high} ({meaning})"

    def parse(text: str) -> int:
        try:
            value = int(text)  # as pulumi.Config.get_int reads it
        except ValueError:
            raise ValueError(f"{text!r} is not {accepted}") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; expected {accepted}")
        return value

    return Key(name, meaning, accepted, parse, default)


def boolean(name: str, default: bool, meaning: str) -> Key:
    accepted = f"true or false ({meaning})"
    words = {"true": True, "True": True, "false": False, "False": False}  # as get_bool reads

    def parse(text: str) -> bool:
        if text not in words:
            raise ValueError(f"{text!r} is not {accepted}")
        return words[text]

    return Key(name, meaning, accepted, parse, default)


def text(
    name: str,
    meaning: str,
    accepted: str,
    valid: Callable[[str], bool],
    *,
    default: str | None = None,
    secret: bool = False,
    normal: Callable[[str], str] = str,
) -> Key:
    """A string key; `normal` writes an accepted value the one way the program uses it."""

    def parse(value: str) -> str:
        if not valid(value):
            raise ValueError(f"{value!r} is not {accepted}")
        return normal(value)

    return Key(name, meaning, accepted, parse, default, secret)


def one_of(name: str, meaning: str, choices: Sequence[str], default: str) -> Key:
    accepted = "one of " + ", ".join(choices)
    return text(name, meaning, accepted, lambda value: value in choices, default=default)


def text_list(
    name: str,
    meaning: str,
    item: str,
    valid: Callable[[str], bool],
    default: tuple[str, ...] | None = (),
) -> Key:
    """A list key: comma-separated (`pulumi config set key a,b`), or a list
    (`pulumi config set --path 'key[0]' a`, which the program gets as JSON)."""
    accepted = f"a comma-separated list of {item}"

    def parse(value: str) -> tuple[str, ...]:
        items: object = [entry.strip() for entry in value.split(",") if entry.strip()]
        if value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except json.JSONDecodeError:
                items = None
        if not isinstance(items, list) or not items or not all(isinstance(e, str) for e in items):
            raise ValueError(f"{value!r} is not {accepted}")
        bad = [entry for entry in items if not valid(entry)]
        if bad:
            raise ValueError(f"{value!r} is not {accepted} (not one: {', '.join(map(repr, bad))})")
        return tuple(items)

    return Key(name, meaning, accepted, parse, default)


# The stack's private network: declared (not chosen by Docker), so that gunicorn can trust
# X-Forwarded-* from this network alone, and two stacks never overlap by surprise.
DEFAULT_SUBNET: Final = "172.28.10.0/24"
# From a /16 down to a /26: room for a few dozen containers at least (replicas are replaced
# side by side, so a deploy briefly needs twice as many addresses).
SUBNET_PREFIXES: Final = (16, 26)

# Docker image references (distribution's grammar): [registry[:port]/]path[:tag][@digest].
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE: Final = re.compile(
    rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
PLATFORM: Final = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)$")


def _is_bind_address(value: str) -> bool:
    """An IPv4 or IPv6 address, with no zone (Docker can't bind fe80::1%eth0) and not an
    IPv4-mapped one (Docker reports ::ffff:127.0.0.1 as 127.0.0.1: write that)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not getattr(address, "scope_id", None) and not getattr(address, "ipv4_mapped", None)


def _is_private_subnet(value: str) -> bool:
    try:
        network = ipaddress.ip_network(value)  # strict: no host bits set
    except ValueError:
        return False
    low, high = SUBNET_PREFIXES
    return network.version == 4 and network.is_private and low <= network.prefixlen <= high


def _is_trusted_network(value: str) -> bool:
    """An IPv4 or IPv6 address or network (no host bits set), short of every address: /0 would
    believe any client's forged X-Forwarded-For."""
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        return False
    return network.prefixlen > 0


def _is_image_reference(value: str) -> bool:
    return len(value) <= 255 and IMAGE_REFERENCE.match(value) is not None


_IMAGE = "an image reference such as python:3.14-slim-trixie or registry:5000/team/img:tag"
# The API's Python runtimes (infra/rest_api_stack.py has each one's base image and interpreter).
API_RUNTIMES: Final = ("cpython", "pypy")
# PyPy's JIT and heap: an API container used 580-660 MiB under load (1 worker x 4 threads) and
# stalled at 512 MiB; CPython's used 41 MiB (README: PyPy).
PYPY_MEMORY_MB: Final = 768
# Processes and threads of one API container beyond its gunicorn master and workers' threads:
# the image's health check (one process every 5 s), the start check's child, `docker exec`.
API_SPARE_PROCESSES: Final = 8
# API containers of one stack that run at once, per replica: a deploy starts every new one
# beside the old one (Swarm: one at a time, fewer).
API_INSTANCES_PER_REPLICA_IN_A_DEPLOY: Final = 2
# HTTPS at the proxy: a CA and certificate made per stack (the default), a certificate chain and
# key given in config, or none (plain HTTP, for a TLS-terminating load balancer in front).
TLS_MODES: Final = ("self-signed", "provided", "off")
# Where the stack runs: containers on one Docker engine, or services on a Docker Swarm
# (infra/swarm.py).
ORCHESTRATORS: Final = ("engine", "swarm")
# The keys that only a swarm reads, and the one it can't apply (Swarm publishes a host-mode port
# on every interface of a node: no bind address).
SWARM_ONLY: Final = ("imageRegistry", "proxyReplicas", "proxyConstraints", "overlayEncrypted")
# A registry the images are pushed to: host[:port] and an optional path, no scheme.
REGISTRY: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?(?:/{_COMPONENT})*$")
# A Swarm placement constraint: node.<attribute> or engine.labels.<name>, == or !=, a value.
CONSTRAINT: Final = re.compile(r"^(node|engine)\.[A-Za-z0-9_.-]+ *(==|!=) *[A-Za-z0-9_.:/-]+$")

# Every key the program reads, in the order the docs list them.
KEYS: Final[tuple[Key, ...]] = (
    integer("proxyPort", 8080, 1, 65535, "host port the proxy publishes"),
    text(
        "proxyBindAddress",
        "host address the proxy port is bound to",
        "an IPv4 or IPv6 address, not IPv4-mapped and with no zone (e.g. 127.0.0.1 or ::1 for"
        " this host only, 0.0.0.0 for all interfaces)",
        _is_bind_address,
        default="127.0.0.1",
        # As Docker reports it (::1, not 0:0:0:0:0:0:0:1): read back the same on every up.
        normal=lambda value: str(ipaddress.ip_address(value)),
    ),
    integer("apiReplicas", 2, 1, 16, "number of API containers"),
    integer("apiWorkers", 1, 1, 32, "gunicorn worker processes per API container"),
    integer("apiThreads", 4, 1, 64, "gunicorn threads per worker"),
    boolean("apiAccessLog", False, "gunicorn's own access log in each API container"),
    one_of(
        "apiRuntime", "the API's Python: CPython, or PyPy (a JIT compiler)", API_RUNTIMES, "cpython"
    ),
    text(
        "networkSubnet",
        "the stack's private Docker network",
        f"a private IPv4 network address with a prefix from /{SUBNET_PREFIXES[0]} to"
        f" /{SUBNET_PREFIXES[1]} (e.g. {DEFAULT_SUBNET}), not used by another Docker network",
        _is_private_subnet,
        default=DEFAULT_SUBNET,
    ),
    integer("apiMemoryMb", 256, 64, 65536, "memory limit of each API container, MiB"),
    integer("proxyMemoryMb", 128, 32, 65536, "memory limit of the proxy container, MiB"),
    integer(
        "processLimit",
        512,
        32,
        65536,
        "processes and threads of the stack's API containers on a host together, and of its"
        " proxy's (RLIMIT_NPROC of each role's own uid)",
    ),
    integer("rateLimitPerSecond", 0, 0, 100000, "requests per second per client address; 0 = off"),
    text_list(
        "loadBalancerAddresses",
        "addresses of a load balancer in front, whose X-Forwarded-For and -Proto the proxy"
        " believes; unset: none",
        "IPv4 or IPv6 addresses or networks without host bits (e.g. 10.0.0.5,10.1.0.0/16), not /0",
        _is_trusted_network,
        default=None,
    ),
    text(
        "apiBaseImage",
        "base image of the API image; empty for the Dockerfile's own",
        _IMAGE,
        _is_image_reference,
    ),
    text(
        "proxyBaseImage",
        "base image of the proxy image; empty for the Dockerfile's own",
        _IMAGE,
        _is_image_reference,
    ),
    text(
        "imagePlatform",
        "platform the images are built for",
        "a Linux platform such as linux/amd64 or linux/arm64",
        lambda value: PLATFORM.match(value) is not None,
        default="linux/amd64",
    ),
    one_of(
        "tlsMode",
        "HTTPS at the proxy: the stack's own CA, your certificate, or none",
        TLS_MODES,
        "self-signed",
    ),
    text_list(
        "tlsHostNames",
        "names clients use, in the certificate; unset: localhost and the bind address",
        "DNS names and IP addresses (e.g. api.example.com,localhost,127.0.0.1)",
        tls_certificates.is_host_name,
        default=None,
    ),
    text(
        "tlsCertificate",
        "with tlsMode provided: the PEM certificate chain, leaf first",
        "a PEM certificate chain",
        lambda value: "-----BEGIN" in value,
        secret=True,
    ),
    text(
        "tlsPrivateKey",
        "with tlsMode provided: the certificate's PEM private key",
        "a PEM private key",
        lambda value: "-----BEGIN" in value,
        secret=True,
    ),
    boolean(
        "hstsIncludeSubDomains",
        False,
        "with tlsMode provided: HSTS covers every subdomain of the names too (includeSubDomains)",
    ),
    integer(
        "httpRedirectPort", 0, 0, 65535, "host port of a plain-HTTP redirect to HTTPS; 0 = none"
    ),
    text(
        "publicHost",
        "host name or address clients reach the proxy at; unset: the bind address (swarm:"
        " localhost)",
        "a DNS name or an IP address (e.g. api.example.com)",
        tls_certificates.is_host_name,
    ),
    one_of(
        "orchestrator",
        "containers on one Docker engine, or services on a Docker Swarm (docker:host: its manager)",
        ORCHESTRATORS,
        "engine",
    ),
    text(
        "imageRegistry",
        "swarm: registry the images are pushed to and every node pulls from; unset: images stay"
        " on the engine that builds them (a one-node swarm)",
        "a registry host[:port] with an optional path, no scheme"
        " (e.g. registry.example.com:5000/team)",
        lambda value: len(value) <= 200 and REGISTRY.match(value) is not None,
    ),
    integer("proxyReplicas", 1, 1, 64, "swarm: nodes that run a proxy (one per node)"),
    text_list(
        "proxyConstraints",
        "swarm: placement constraints of the proxy's nodes",
        "Swarm constraints such as node.role==manager or node.labels.edge==true",
        lambda value: CONSTRAINT.match(value) is not None,
        default=None,
    ),
    boolean(
        "overlayEncrypted",
        False,
        "swarm: IPsec between nodes on the stack's overlay network (needs the kernel's ESP)",
    ),
)
KEYS_BY_NAME: Final = {key.name: key for key in KEYS}


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; the message names every bad key."""


def config_error(problems: Sequence[str]) -> ConfigError:
    """The error for `problems` (each "<key>: what is wrong"), raised before anything is made."""
    return ConfigError(
        f"invalid configuration of stack {pulumi.get_stack()!r} (nothing was created):\n  "
        + "\n  ".join(problems)
    )


@dataclass(frozen=True)
class Settings:
    """The validated configuration, one field per key of KEYS (proxyPort -> proxy_port)."""

    proxy_port: int
    proxy_bind_address: str
    api_replicas: int
    api_workers: int
    api_threads: int
    api_access_log: bool
    api_runtime: str
    network_subnet: str
    api_memory_mb: int
    proxy_memory_mb: int
    process_limit: int
    rate_limit_per_second: int
    # None: no load balancer; the proxy overwrites every client's forwarded headers.
    load_balancer_addresses: tuple[str, ...] | None
    # None: the Dockerfile's own default base image.
    api_base_image: str | None
    proxy_base_image: str | None
    image_platform: str
    tls_mode: str
    # None: localhost and the bind address.
    tls_host_names: tuple[str, ...] | None
    tls_certificate: str | None
    tls_private_key: str | None = field(repr=False)
    hsts_include_sub_domains: bool
    http_redirect_port: int
    # None: the bind address's (engine) or localhost (swarm).
    public_host: str | None
    orchestrator: str
    # None: no registry (images stay on the engine that builds them).
    image_registry: str | None
    proxy_replicas: int
    # None: any node.
    proxy_constraints: tuple[str, ...] | None
    overlay_encrypted: bool

    @property
    def swarm(self) -> bool:
        return self.orchestrator == "swarm"

    @property
    def host(self) -> str:
        """The host clients reach the proxy at (a name, or an address without brackets)."""
        if self.public_host:
            return self.public_host
        return "localhost" if self.swarm else str(local_address(self.proxy_bind_address))

    @property
    def tls(self) -> "Tls":
        names = self.tls_host_names or default_host_names(self.proxy_bind_address)
        if not self.tls_host_names and self.public_host:
            names = (self.public_host, *[name for name in names if name != self.public_host])
        return Tls(
            self.tls_mode,
            names,
            self.tls_certificate,
            self.tls_private_key,
            self.hsts_include_sub_domains,
        )


@dataclass(frozen=True)
class Tls:
    """How the proxy serves HTTPS; `certificate` and `private_key` (PEM) with "provided"."""

    mode: str
    # The names clients use; the certificate is valid for each.
    host_names: tuple[str, ...]
    certificate: str | None = None
    private_key: str | None = field(default=None, repr=False)
    # HSTS (sent with a provided certificate only) for every subdomain of the names too.
    hsts_include_sub_domains: bool = False

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def local_address(bind_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address clients on this host reach the proxy at: the bind address, or for an
    all-interfaces bind its loopback address."""
    address = ipaddress.ip_address(bind_address)
    if address.is_unspecified:
        return ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return address


def default_host_names(bind_address: str) -> tuple[str, ...]:
    """localhost and the address clients on this host use (the host's own names are unknown
    here: set tlsHostNames)."""
    return ("localhost", str(local_address(bind_address)))


def _runtime_problems(settings: Settings) -> list[str]:
    if settings.api_runtime == "pypy" and settings.api_memory_mb < PYPY_MEMORY_MB:
        return [
            f"apiMemoryMb: {settings.api_memory_mb} MiB is too little for apiRuntime pypy (its"
            f" JIT and heap took 580-660 MiB under load); set {PYPY_MEMORY_MB} or more"
        ]
    return []


def api_processes_in_a_deploy(settings: Settings) -> int:
    """Processes and threads the stack's API user runs at most on one host: during a deploy,
    old and new containers side by side, each a gunicorn master, its workers (a main thread and
    `apiThreads` more each) and some spare."""
    container = 1 + settings.api_workers * (1 + settings.api_threads) + API_SPARE_PROCESSES
    return settings.api_replicas * API_INSTANCES_PER_REPLICA_IN_A_DEPLOY * container


def _process_problems(settings: Settings) -> list[str]:
    need = api_processes_in_a_deploy(settings)
    if need <= settings.process_limit:
        return []
    return [
        f"processLimit: {settings.process_limit} is below the {need} processes and threads the"
        f" API needs while a deploy runs old and new containers side by side (apiReplicas"
        f" {settings.api_replicas} x {API_INSTANCES_PER_REPLICA_IN_A_DEPLOY} containers x (1"
        f" master + apiWorkers {settings.api_workers} x (1 + apiThreads {settings.api_threads})"
        f" + {API_SPARE_PROCESSES} spare)); raise processLimit to {need} or more, or lower"
        " apiReplicas, apiWorkers or apiThreads"
    ]


def _orchestrator_problems(settings: Settings, configured: set[str]) -> list[str]:
    """Keys that the chosen orchestrator would not apply (a swarm key at its default is
    harmless: `pulumi new` writes every default)."""
    if not settings.swarm:
        return [
            f"{name}: applies with orchestrator swarm only (this stack's is engine)"
            for name in SWARM_ONLY
            if getattr(settings, KEYS_BY_NAME[name].field) != KEYS_BY_NAME[name].default
        ]
    if "proxyBindAddress" in configured:
        return [
            "proxyBindAddress: not applied with orchestrator swarm: a Swarm service publishes"
            " its port on every interface of each node that runs it. Delete the key from the"
            " stack's config, and limit who reaches proxyPort with the nodes' firewall; set"
            " publicHost to the name clients use"
        ]
    return []


def _tls_problems(settings: Settings, project: str) -> list[str]:
    """What the TLS keys get wrong together, and in "provided" mode the certificate and key
    themselves (parsed, matching, in their validity period, valid for the host names)."""
    tls, redirect = settings.tls, settings.http_redirect_port
    mode, certificate, key = tls.mode, tls.certificate, tls.private_key
    problems = []
    if redirect and mode == "off":
        problems.append("httpRedirectPort: a redirect to HTTPS needs tlsMode other than off")
    if redirect and redirect == settings.proxy_port:
        problems.append(f"httpRedirectPort: {redirect} is proxyPort too; give it a port of its own")
    if mode != "provided":
        if tls.hsts_include_sub_domains:
            problems.append(
                "hstsIncludeSubDomains: HSTS is sent with tlsMode provided only (this stack's is"
                f" {mode!r}); set it to false"
            )
        given = [
            name
            for name, value in (("tlsCertificate", certificate), ("tlsPrivateKey", key))
            if value
        ]
        return problems + [f"{name}: set, but tlsMode is {mode!r} (use provided)" for name in given]
    for name, value, flag in (
        ("tlsCertificate", certificate, ""),
        ("tlsPrivateKey", key, "--secret "),
    ):
        if not value:
            problems.append(
                f"{name}: missing; tlsMode provided takes a PEM certificate chain and its private"
                f" key (`pulumi config set {flag}{name} < file.pem`)"
            )
    if key and not pulumi.runtime.config.is_config_secret(f"{project}:tlsPrivateKey"):
        problems.append(
            "tlsPrivateKey: not a secret; set it with `pulumi config set --secret tlsPrivateKey"
            " < key.pem` so that it is encrypted in the stack's config and state"
        )
    if certificate and key:
        problems += tls_certificates.problems(
            certificate,
            key,
            tls.host_names,
            datetime.now(UTC),
            chain_key="tlsCertificate",
            key_key="tlsPrivateKey",
            hosts_key="tlsHostNames",
        )
    return problems


def read(
    configured: Callable[[str], str | None], keys: Sequence[Key]
) -> tuple[dict[str, Any], list[str]]:
    """Each key's value by Settings field (its default when unset), and every problem found."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key in keys:
        raw = configured(key.name)
        values[key.field] = key.default
        if raw is None:
            continue
        try:
            values[key.field] = key.parse(raw)
        except ValueError as error:
            reason = f"its value (a secret) is not {key.accepted}" if key.secret else error
            problems.append(f"{key.name}: {reason}")
    return values, problems


def settings_from(values: dict[str, str]) -> Settings:
    """Settings from config texts by key name ("proxyPort": "8080"), unset keys at default."""
    fields, problems = read(values.get, KEYS)
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(**fields)


def _configured_keys() -> set[str]:
    """Every full key ("<namespace>:<name>") the stack configures."""
    return set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())


def _unknown_keys(project: str) -> list[str]:
    """Keys set under this project's namespace that no setting reads (most often a typo)."""
    prefix = f"{project}:"
    return sorted(
        key[len(prefix) :]
        for key in _configured_keys()
        if key.startswith(prefix) and key[len(prefix) :] not in KEYS_BY_NAME
    )


def _warn_about_other_namespaces(project: str) -> None:
    """A setting's key under another project's name is read by nobody: most often a stack file
    copied by `pulumi new` from the template under a new project name."""
    ignored: dict[str, list[str]] = {}
    for key in sorted(_configured_keys()):
        namespace, _, name = key.partition(":")
        if namespace != project and name in KEYS_BY_NAME:
            ignored.setdefault(namespace, []).append(name)
    for namespace, names in ignored.items():
        pulumi.log.warn(
            f"not read: {', '.join(f'{namespace}:{name}' for name in names)}. This project is"
            f" {project!r}: its keys are {project}:<key>. Rename these, or delete them from the"
            " stack's config."
        )


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack configuration; raise ConfigError naming every bad key."""
    config = config or pulumi.Config()
    known = ", ".join(sorted(KEYS_BY_NAME))
    problems = [f"{key}: unknown key (known keys: {known})" for key in _unknown_keys(config.name)]
    values, invalid = read(config.get, KEYS)
    problems += invalid
    settings = Settings(**values)
    # Keys checked together, once each of them reads well on its own.
    failed = {problem.split(":", 1)[0] for problem in invalid}
    tls_keys = {
        "tlsMode",
        "tlsHostNames",
        "tlsCertificate",
        "tlsPrivateKey",
        "hstsIncludeSubDomains",
    }
    if not failed & (tls_keys | {"httpRedirectPort", "proxyPort", "proxyBindAddress"}):
        problems += _tls_problems(settings, config.name)
    if not failed & {"apiRuntime", "apiMemoryMb"}:
        problems += _runtime_problems(settings)
    if not failed & {"processLimit", "apiReplicas", "apiWorkers", "apiThreads"}:
        problems += _process_problems(settings)
    if "orchestrator" not in failed:
        configured = {key.name for key in KEYS if config.get(key.name) is not None}
        problems += _orchestrator_problems(settings, configured)
    problems += engine_connection_problems()
    if problems:
        raise config_error(problems)
    _warn_about_other_namespaces(config.name)
    return settings
