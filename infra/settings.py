"""The stack's configuration, read once and validated before any resource is registered.

The keys are infra/config_keys.py's table, and the Settings fields are generated from it
(infra/settings_fields.py, `make generate`). Each key is read on its own, then the keys that
depend on each other are checked together. All problems are reported together, each a
ConfigProblem naming its key and what it accepts, so a bad `Pulumi.<stack>.yaml` fails
`pulumi preview` before anything is created.
"""

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pulumi
import pulumi.runtime.config

import tls_certificates
from config_keys import KEYS, KEYS_BY_NAME, PYPY_MEMORY_MB, Key
from config_problems import ConfigProblem
from health_gate import engine_connection_problems
from settings_fields import SettingsFields

__all__ = [
    "KEYS",
    "KEYS_BY_NAME",
    "PYPY_MEMORY_MB",
    "ConfigError",
    "ConfigProblem",
    "Key",
    "Settings",
]

# Processes and threads of one API container beyond its gunicorn master and workers' threads:
# the image's health check (one process every 5 s), the start check's child, `docker exec`.
API_SPARE_PROCESSES: Final = 8
# API containers of one stack that run at once, per replica: a deploy starts every new one
# beside the old one (Swarm: one at a time, fewer).
API_INSTANCES_PER_REPLICA_IN_A_DEPLOY: Final = 2
# The keys that only a swarm reads, and the one it can't apply (Swarm publishes a host-mode port
# on every interface of a node: no bind address).
SWARM_ONLY: Final = ("imageRegistry", "proxyReplicas", "proxyConstraints", "overlayEncrypted")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; the message names every bad key, and `problems` holds each
    problem with its keys."""

    def __init__(self, message: str, problems: Sequence[ConfigProblem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @property
    def keys(self) -> set[str]:
        """Every key a problem names."""
        return {key for problem in self.problems for key in problem.keys}


def config_error(problems: Sequence[ConfigProblem]) -> ConfigError:
    """The error for `problems`, raised before anything is made."""
    return ConfigError(
        f"invalid configuration of stack {pulumi.get_stack()!r} (nothing was created):\n  "
        + "\n  ".join(map(str, problems)),
        problems,
    )


@dataclass(frozen=True)
class Settings(SettingsFields):
    """The validated configuration: one field per key of KEYS (proxyPort -> proxy_port), and
    what the program derives from them."""

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


# The keys a check reads besides the one it names.
MODE: Final = ("tlsMode",)
PROCESS_KEYS: Final = ("apiReplicas", "apiWorkers", "apiThreads")


def _runtime_problems(settings: Settings) -> list[ConfigProblem]:
    if settings.api_runtime == "pypy" and settings.api_memory_mb < PYPY_MEMORY_MB:
        return [
            ConfigProblem(
                "apiMemoryMb",
                f"{settings.api_memory_mb} MiB is too little for apiRuntime pypy (its JIT and"
                f" heap took 580-660 MiB under load); set {PYPY_MEMORY_MB} or more",
                also=["apiRuntime"],
            )
        ]
    return []


def api_processes_in_a_deploy(settings: Settings) -> int:
    """Processes and threads the stack's API user runs at most on one host: during a deploy,
    old and new containers side by side, each a gunicorn master, its workers (a main thread and
    `apiThreads` more each) and some spare."""
    container = 1 + settings.api_workers * (1 + settings.api_threads) + API_SPARE_PROCESSES
    return settings.api_replicas * API_INSTANCES_PER_REPLICA_IN_A_DEPLOY * container


def _process_problems(settings: Settings) -> list[ConfigProblem]:
    need = api_processes_in_a_deploy(settings)
    if need <= settings.process_limit:
        return []
    reason = (
        f"{settings.process_limit} is below the {need} processes and threads the"
        f" API needs while a deploy runs old and new containers side by side (apiReplicas"
        f" {settings.api_replicas} x {API_INSTANCES_PER_REPLICA_IN_A_DEPLOY} containers x (1"
        f" master + apiWorkers {settings.api_workers} x (1 + apiThreads {settings.api_threads})"
        f" + {API_SPARE_PROCESSES} spare)); raise processLimit to {need} or more, or lower"
        " apiReplicas, apiWorkers or apiThreads"
    )
    return [ConfigProblem("processLimit", reason, also=PROCESS_KEYS)]


def _orchestrator_problems(settings: Settings, configured: set[str]) -> list[ConfigProblem]:
    """Keys that the chosen orchestrator would not apply (a swarm key at its default is
    harmless: `pulumi new` writes every default)."""
    if not settings.swarm:
        return [
            ConfigProblem(
                name,
                "applies with orchestrator swarm only (this stack's is engine)",
                also=["orchestrator"],
            )
            for name in SWARM_ONLY
            if getattr(settings, KEYS_BY_NAME[name].field) != KEYS_BY_NAME[name].default
        ]
    if "proxyBindAddress" in configured:
        return [
            ConfigProblem(
                "proxyBindAddress",
                "not applied with orchestrator swarm: a Swarm service publishes its port on"
                " every interface of each node that runs it. Delete the key from the stack's"
                " config, and limit who reaches proxyPort with the nodes' firewall; set"
                " publicHost to the name clients use",
                also=["orchestrator"],
            )
        ]
    return []


def _tls_problems(settings: Settings, project: str) -> list[ConfigProblem]:
    """What the TLS keys get wrong together, and in "provided" mode the certificate and key
    themselves (parsed, matching, in their validity period, valid for the host names)."""
    tls, redirect = settings.tls, settings.http_redirect_port
    mode, certificate, key = tls.mode, tls.certificate, tls.private_key
    problems = []
    if redirect and mode == "off":
        problems.append(
            ConfigProblem(
                "httpRedirectPort", "a redirect to HTTPS needs tlsMode other than off", also=MODE
            )
        )
    if redirect and redirect == settings.proxy_port:
        problems.append(
            ConfigProblem(
                "httpRedirectPort",
                f"{redirect} is proxyPort too; give it a port of its own",
                also=["proxyPort"],
            )
        )
    if mode != "provided":
        if tls.hsts_include_sub_domains:
            problems.append(
                ConfigProblem(
                    "hstsIncludeSubDomains",
                    f"HSTS is sent with tlsMode provided only (this stack's is {mode!r}); set it"
                    " to false",
                    also=MODE,
                )
            )
        given = [
            name
            for name, value in (("tlsCertificate", certificate), ("tlsPrivateKey", key))
            if value
        ]
        return problems + [
            ConfigProblem(name, f"set, but tlsMode is {mode!r} (use provided)", also=MODE)
            for name in given
        ]
    for name, value, flag in (
        ("tlsCertificate", certificate, ""),
        ("tlsPrivateKey", key, "--secret "),
    ):
        if not value:
            problems.append(
                ConfigProblem(
                    name,
                    "missing; tlsMode provided takes a PEM certificate chain and its private key"
                    f" (`pulumi config set {flag}{name} < file.pem`)",
                    also=MODE,
                )
            )
    if key and not pulumi.runtime.config.is_config_secret(f"{project}:tlsPrivateKey"):
        problems.append(
            ConfigProblem(
                "tlsPrivateKey",
                "not a secret; set it with `pulumi config set --secret tlsPrivateKey < key.pem`"
                " so that it is encrypted in the stack's config and state",
            )
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
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """Each key's value by Settings field (its default when unset), and every problem found."""
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for key in keys:
        raw = configured(key.name)
        values[key.field] = key.default
        if raw is None:
            continue
        try:
            values[key.field] = key.parse(raw)
        except ValueError as error:
            reason = f"its value (a secret) is not {key.accepted}" if key.secret else str(error)
            problems.append(ConfigProblem(key.name, reason))
    return values, problems


def settings_from(values: dict[str, str]) -> Settings:
    """Settings from config texts by key name ("proxyPort": "8080"), unset keys at default."""
    fields, problems = read(values.get, KEYS)
    if problems:
        raise ConfigError("\n".join(map(str, problems)), problems)
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
    problems = [
        ConfigProblem(key, f"unknown key (known keys: {known})")
        for key in _unknown_keys(config.name)
    ]
    values, invalid = read(config.get, KEYS)
    problems += invalid
    settings = Settings(**values)
    # Keys checked together, once each of them reads well on its own.
    failed = {problem.key for problem in invalid}
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
    if not failed & {"processLimit", *PROCESS_KEYS}:
        problems += _process_problems(settings)
    if "orchestrator" not in failed:
        configured = {key.name for key in KEYS if config.get(key.name) is not None}
        problems += _orchestrator_problems(settings, configured)
    problems += engine_connection_problems()
    if problems:
        raise config_error(problems)
    _warn_about_other_namespaces(config.name)
    return settings
