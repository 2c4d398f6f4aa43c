"""The stack's configuration, read once and validated before any resource is registered.

Every key is read with pulumi.Config's typed getters; every value is checked against the range
users can rely on. All problems are reported together, each naming its key and what it
accepts, so a bad `Pulumi.<stack>.yaml` fails `pulumi preview` before anything is created.
"""

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import pulumi
import pulumi.runtime.config

import tls_certificates

# Whole-number keys: (default, lowest accepted, highest accepted, what it means).
INT_KEYS: Final[dict[str, tuple[int, int, int, str]]] = {
    "proxyPort": (8080, 1, 65535, "host port the proxy publishes"),
    "apiReplicas": (2, 1, 16, "number of API containers"),
    "apiWorkers": (1, 1, 32, "gunicorn worker processes per API container"),
    "apiThreads": (4, 1, 64, "gunicorn threads per worker"),
    "apiMemoryMb": (256, 64, 65536, "memory limit of each API container, MiB"),
    "proxyMemoryMb": (128, 32, 65536, "memory limit of the proxy container, MiB"),
    "processLimit": (512, 32, 65536, "processes and threads per container user (nproc)"),
    "rateLimitPerSecond": (0, 0, 100000, "requests per second per client address; 0 = off"),
    "httpRedirectPort": (0, 0, 65535, "host port of a plain-HTTP redirect to HTTPS; 0 = none"),
}
STRING_KEYS: Final = (
    "proxyBindAddress",
    "networkSubnet",
    "apiBaseImage",
    "proxyBaseImage",
    "imagePlatform",
    "tlsMode",
    "tlsHostNames",
    "tlsCertificate",
    "tlsPrivateKey",
)
# HTTPS at the proxy: a CA and certificate made per stack (the default), a certificate chain and
# key given in config, or none (plain HTTP, for a TLS-terminating load balancer in front).
TLS_MODES: Final = ("self-signed", "provided", "off")
DEFAULT_TLS_MODE: Final = "self-signed"
# On/off keys: (default, what it means).
BOOL_KEYS: Final[dict[str, tuple[bool, str]]] = {
    "apiAccessLog": (False, "gunicorn's own access log in each API container"),
}
DEFAULT_BIND_ADDRESS: Final = "127.0.0.1"
# The stack's private network: declared (not chosen by Docker), so that gunicorn can trust
# X-Forwarded-* from this network alone, and two stacks never overlap by surprise.
DEFAULT_SUBNET: Final = "172.28.10.0/24"
# From a /16 down to a /26: room for a few dozen containers at least (replicas are replaced
# side by side, so a deploy briefly needs twice as many addresses).
SUBNET_PREFIXES: Final = (16, 26)
DEFAULT_PLATFORM: Final = "linux/amd64"

# Docker image references (distribution's grammar): [registry[:port]/]path[:tag][@digest].
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE: Final = re.compile(
    rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
PLATFORM: Final = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)$")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; the message names every bad key."""


@dataclass(frozen=True)
class Tls:
    """How the proxy serves HTTPS. `certificate` and `private_key` (PEM) in "provided" mode."""

    mode: str = DEFAULT_TLS_MODE
    # The names clients use; the certificate is valid for each.
    host_names: tuple[str, ...] = ("localhost", DEFAULT_BIND_ADDRESS)
    certificate: str | None = None
    private_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class Settings:
    proxy_port: int = INT_KEYS["proxyPort"][0]
    proxy_bind_address: str = DEFAULT_BIND_ADDRESS
    api_replicas: int = INT_KEYS["apiReplicas"][0]
    api_workers: int = INT_KEYS["apiWorkers"][0]
    api_threads: int = INT_KEYS["apiThreads"][0]
    api_memory_mb: int = INT_KEYS["apiMemoryMb"][0]
    proxy_memory_mb: int = INT_KEYS["proxyMemoryMb"][0]
    process_limit: int = INT_KEYS["processLimit"][0]
    rate_limit_per_second: int = INT_KEYS["rateLimitPerSecond"][0]
    http_redirect_port: int = INT_KEYS["httpRedirectPort"][0]
    tls: Tls = field(default_factory=Tls)
    api_access_log: bool = BOOL_KEYS["apiAccessLog"][0]
    network_subnet: str = DEFAULT_SUBNET
    # None: the Dockerfile's own default base image.
    api_base_image: str | None = None
    proxy_base_image: str | None = None
    image_platform: str = DEFAULT_PLATFORM


def _check_int(config: pulumi.Config, key: str, problems: list[str]) -> int:
    default, low, high, meaning = INT_KEYS[key]
    accepted = f"a whole number from {low} to {high} ({meaning})"
    try:
        value = config.get_int(key)
    except pulumi.ConfigTypeError:
        problems.append(f"{key}: {config.get(key)!r} is not {accepted}")
        return default
    # `get_int(key) or default` would silently turn a configured 0 into the default.
    if value is None:
        return default
    if not low <= value <= high:
        problems.append(f"{key}: {value} is out of range; expected {accepted}")
    return value


def _check_bool(config: pulumi.Config, key: str, problems: list[str]) -> bool:
    default, meaning = BOOL_KEYS[key]
    try:
        value = config.get_bool(key)
    except pulumi.ConfigTypeError:
        problems.append(f"{key}: {config.get(key)!r} is not true or false ({meaning})")
        return default
    return default if value is None else value


def _check_string(
    config: pulumi.Config,
    key: str,
    problems: list[str],
    valid: Callable[[str], bool],
    accepted: str,
) -> str | None:
    value = config.get(key)
    if value is not None and not valid(value):
        problems.append(f"{key}: {value!r} is not {accepted}")
    return value


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


def _is_image_reference(value: str) -> bool:
    return len(value) <= 255 and IMAGE_REFERENCE.match(value) is not None


def default_host_names(bind_address: str) -> tuple[str, ...]:
    """localhost and the bind address; an all-interfaces bind by its loopback address (the
    host's own names are unknown here: set tlsHostNames)."""
    address = ipaddress.ip_address(bind_address)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return ("localhost", str(address))


def _check_tls(
    config: pulumi.Config, problems: list[str], bind_address: str, ints: dict[str, int]
) -> Tls:
    """The TLS keys, and in "provided" mode the certificate and key themselves."""
    mode = config.get("tlsMode") or DEFAULT_TLS_MODE
    if mode not in TLS_MODES:
        problems.append(f"tlsMode: {mode!r} is not one of {', '.join(TLS_MODES)}")
    names_value = config.get("tlsHostNames")
    if names_value is None:
        names = default_host_names(bind_address)
    else:
        names = tuple(name.strip() for name in names_value.split(",") if name.strip())
        bad = [name for name in names if not tls_certificates.is_host_name(name)]
        if bad or not names:
            problems.append(
                f"tlsHostNames: {names_value!r} is not a comma-separated list of DNS names and IP"
                " addresses (e.g. api.example.com,localhost,127.0.0.1)"
            )
    redirect = ints["httpRedirectPort"]
    if redirect and mode == "off":
        problems.append("httpRedirectPort: a redirect to HTTPS needs tlsMode other than off")
    if redirect and redirect == ints["proxyPort"]:
        problems.append(f"httpRedirectPort: {redirect} is proxyPort too; give it a port of its own")
    certificate, private_key = config.get("tlsCertificate"), config.get("tlsPrivateKey")
    if mode != "provided":
        extra = [
            k for k, v in (("tlsCertificate", certificate), ("tlsPrivateKey", private_key)) if v
        ]
        problems.extend(f"{key}: set, but tlsMode is {mode!r} (use provided)" for key in extra)
        return Tls(mode, names)
    for key, value in (("tlsCertificate", certificate), ("tlsPrivateKey", private_key)):
        if not value:
            problems.append(
                f"{key}: missing; tlsMode provided takes a PEM certificate chain and its private"
                f" key (`pulumi config set --secret {key} < file.pem`)"
            )
    if private_key and not pulumi.runtime.config.is_config_secret(f"{config.name}:tlsPrivateKey"):
        problems.append(
            "tlsPrivateKey: not a secret; set it with `pulumi config set --secret tlsPrivateKey"
            " < key.pem` so that it is encrypted in the stack's config and state"
        )
    if certificate and private_key:
        problems.extend(
            tls_certificates.problems(
                certificate,
                private_key,
                names,
                datetime.now(UTC),
                chain_key="tlsCertificate",
                key_key="tlsPrivateKey",
                hosts_key="tlsHostNames",
            )
        )
    return Tls(mode, names, certificate, private_key)


def _unknown_keys(project: str) -> list[str]:
    """Keys set under this project's namespace that no setting reads (most often a typo)."""
    known = set(INT_KEYS) | set(STRING_KEYS) | set(BOOL_KEYS)
    configured = set(pulumi.runtime.config.CONFIG.get()) | set(
        pulumi.runtime.config.get_config_env()
    )
    prefix = f"{project}:"
    return sorted(
        key[len(prefix) :]
        for key in configured
        if key.startswith(prefix) and key[len(prefix) :] not in known
    )


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack configuration; raise ConfigError naming every bad key."""
    config = config or pulumi.Config()
    known = ", ".join(sorted([*INT_KEYS, *STRING_KEYS, *BOOL_KEYS]))
    problems = [f"{key}: unknown key (known keys: {known})" for key in _unknown_keys(config.name)]
    ints = {key: _check_int(config, key, problems) for key in INT_KEYS}
    bools = {key: _check_bool(config, key, problems) for key in BOOL_KEYS}
    bind = _check_string(
        config,
        "proxyBindAddress",
        problems,
        _is_bind_address,
        "an IPv4 or IPv6 address, not IPv4-mapped and with no zone (e.g. 127.0.0.1 or ::1 for"
        " this host only, 0.0.0.0 for all interfaces)",
    )
    low, high = SUBNET_PREFIXES
    subnet = _check_string(
        config,
        "networkSubnet",
        problems,
        _is_private_subnet,
        f"a private IPv4 network address with a prefix from /{low} to /{high}"
        f" (e.g. {DEFAULT_SUBNET}), not used by another Docker network",
    )
    image = "an image reference such as python:3.14-slim-trixie or registry:5000/team/img:tag"
    api_base = _check_string(config, "apiBaseImage", problems, _is_image_reference, image)
    proxy_base = _check_string(config, "proxyBaseImage", problems, _is_image_reference, image)
    platform = _check_string(
        config,
        "imagePlatform",
        problems,
        lambda value: PLATFORM.match(value) is not None,
        "a Linux platform such as linux/amd64 or linux/arm64",
    )
    tls = (
        _check_tls(config, problems, bind or DEFAULT_BIND_ADDRESS, ints)
        if not bind or _is_bind_address(bind)
        else Tls()
    )
    if problems:
        raise ConfigError(
            f"invalid configuration of stack {pulumi.get_stack()!r} (nothing was created):\n  "
            + "\n  ".join(problems)
        )
    return Settings(
        proxy_port=ints["proxyPort"],
        # As Docker reports it (::1, not 0:0:0:0:0:0:0:1): read back the same on every up.
        proxy_bind_address=str(ipaddress.ip_address(bind or DEFAULT_BIND_ADDRESS)),
        api_replicas=ints["apiReplicas"],
        api_workers=ints["apiWorkers"],
        api_threads=ints["apiThreads"],
        api_memory_mb=ints["apiMemoryMb"],
        proxy_memory_mb=ints["proxyMemoryMb"],
        process_limit=ints["processLimit"],
        rate_limit_per_second=ints["rateLimitPerSecond"],
        http_redirect_port=ints["httpRedirectPort"],
        tls=tls,
        api_access_log=bools["apiAccessLog"],
        network_subnet=subnet or DEFAULT_SUBNET,
        api_base_image=api_base,
        proxy_base_image=proxy_base,
        image_platform=platform or DEFAULT_PLATFORM,
    )
