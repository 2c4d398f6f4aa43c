"""The table of config keys: every key a stack can set, its type (the kind of row: integer,
boolean, text, one_of, text_list), default, what it accepts, what it means, and how the docs
show it.

This is the one source: `make generate` (scripts/generate_config.py) writes the Settings fields
(infra/settings_fields.py), Pulumi.yaml's template section, Pulumi.dev.yaml's keys,
docs/configuration.md's table and the README's short one from it, and tests/template fails
when one of them is stale. infra/settings.py reads and checks the keys together.
"""

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import tls_certificates

# What a key's configured text turns into.
Value = int | bool | str | tuple[str, ...]


@dataclass(frozen=True)
class Docs:
    """What the generated docs say of a key beyond its one-line meaning."""

    # docs/configuration.md's text (Markdown; links relative to docs/); empty: the meaning.
    doc: str = ""
    # What an unset key with no default means, in the docs' default column.
    unset: str = "none"
    # A value stack files show commented out for a key with no default.
    example: str | None = None
    # Among the ten settings people change most: the README lists these.
    top: bool = False


@dataclass(frozen=True)
class Key:
    """One config key. `parse` turns the configured text into the value the program uses, or
    raises ValueError saying what was wrong and what is accepted."""

    name: str
    meaning: str
    # What a value must be, as error messages say it.
    accepted: str
    parse: Callable[[str], Value]
    # The Settings field's type as the generated module writes it (without `| None`).
    python_type: str
    # What a value must be, short, as the docs' table says it.
    constraint: str
    # None: unset unless configured (the program then decides, e.g. the Dockerfile's base image).
    default: Value | None = None
    # Set with `pulumi config set --secret`: `pulumi new` asks for it hidden and encrypts it, and
    # no message shows its value. Whoever uses it passes it on as pulumi.Output.secret.
    secret: bool = False
    docs: Docs = Docs()

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


def integer(name: str, default: int, low: int, high: int, meaning: str, docs: Docs = Docs()) -> Key:
    accepted = f"a whole number from {low} to {high} ({meaning})"

    def parse(text: str) -> int:
        try:
            value = int(text)  # as pulumi.Config.get_int reads it
        except ValueError:
            raise ValueError(f"{text!r} is not {accepted}") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; expected {accepted}")
        return value

    return Key(name, meaning, accepted, parse, "int", f"{low}-{high}", default, docs=docs)


def boolean(name: str, default: bool, meaning: str, docs: Docs = Docs()) -> Key:
    accepted = f"true or false ({meaning})"
    words = {"true": True, "True": True, "false": False, "False": False}  # as get_bool reads

    def parse(text: str) -> bool:
        if text not in words:
            raise ValueError(f"{text!r} is not {accepted}")
        return words[text]

    return Key(name, meaning, accepted, parse, "bool", "`true`, `false`", default, docs=docs)


def text(
    name: str,
    meaning: str,
    accepted: str,
    valid: Callable[[str], bool],
    *,
    default: str | None = None,
    secret: bool = False,
    normal: Callable[[str], str] = str,
    constraint: str | None = None,
    docs: Docs = Docs(),
) -> Key:
    """A string key; `normal` writes an accepted value the one way the program uses it.
    `constraint`: what the docs say it accepts (default: `accepted`)."""

    def parse(value: str) -> str:
        if not valid(value):
            raise ValueError(f"{value!r} is not {accepted}")
        return normal(value)

    return Key(name, meaning, accepted, parse, "str", constraint or accepted, default, secret, docs)


def one_of(
    name: str, meaning: str, choices: Sequence[str], default: str, docs: Docs = Docs()
) -> Key:
    accepted = "one of " + ", ".join(choices)
    return text(
        name,
        meaning,
        accepted,
        lambda value: value in choices,
        default=default,
        constraint=", ".join(f"`{choice}`" for choice in choices),
        docs=docs,
    )


def text_list(
    name: str,
    meaning: str,
    item: str,
    valid: Callable[[str], bool],
    default: tuple[str, ...] | None = (),
    docs: Docs = Docs(),
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

    constraint = f"{item}, comma-separated"
    return Key(name, meaning, accepted, parse, "tuple[str, ...]", constraint, default, docs=docs)


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


# PyPy's JIT and heap need this much per API container (docs/pypy.md has the measurement).
PYPY_MEMORY_MB: Final = 768
_IMAGE = "an image reference such as python:3.14-slim-trixie or registry:5000/team/img:tag"
# The API's Python runtimes (infra/rest_api_stack.py has each one's base image and interpreter).
API_RUNTIMES: Final = ("cpython", "pypy")
# HTTPS at the proxy: a CA and certificate made per stack (the default), a certificate chain and
# key given in config, or none (plain HTTP, for a TLS-terminating load balancer in front).
TLS_MODES: Final = ("self-signed", "provided", "off")
# Where the stack runs: containers on one Docker engine, or services on a Docker Swarm
# (infra/swarm.py).
ORCHESTRATORS: Final = ("engine", "swarm")
# A registry the images are pushed to: host[:port] and an optional path, no scheme.
REGISTRY: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?(?:/{_COMPONENT})*$")
# A Swarm placement constraint: node.<attribute> or engine.labels.<name>, == or !=, a value.
CONSTRAINT: Final = re.compile(r"^(node|engine)\.[A-Za-z0-9_.-]+ *(==|!=) *[A-Za-z0-9_.:/-]+$")


# Every key the program reads, in the order the docs list them. Docs(top=True): among the ten
# the README lists.
KEYS: Final[tuple[Key, ...]] = (
    integer("proxyPort", 8080, 1, 65535, "host port the proxy publishes", Docs(top=True)),
    text(
        "proxyBindAddress",
        "host address the proxy port is bound to",
        "an IPv4 or IPv6 address, not IPv4-mapped and with no zone (e.g. 127.0.0.1 or ::1 for"
        " this host only, 0.0.0.0 for all interfaces)",
        _is_bind_address,
        default="127.0.0.1",
        # As Docker reports it (::1, not 0:0:0:0:0:0:0:1): read back the same on every up.
        normal=lambda value: str(ipaddress.ip_address(value)),
        constraint="an IPv4 or IPv6 address, no zone",
        docs=Docs(
            "host address of that port (`::1` for IPv6 loopback); `0.0.0.0` exposes it on every"
            " interface, so set that only on purpose",
            top=True,
        ),
    ),
    integer(
        "apiReplicas",
        2,
        1,
        16,
        "number of API containers",
        Docs(
            "API containers behind the proxy (all sharing the network alias `api`); with 1,"
            " deploys still fail no request",
            top=True,
        ),
    ),
    integer(
        "apiWorkers",
        1,
        1,
        32,
        "gunicorn worker processes per API container",
        Docs(
            "gunicorn worker processes per API container; the API is CPU-bound, so aim for"
            " replicas x workers about the host's cores",
            top=True,
        ),
    ),
    integer(
        "apiThreads",
        4,
        1,
        64,
        "gunicorn threads per worker",
        Docs("gunicorn threads per worker (gthread)", top=True),
    ),
    boolean(
        "apiAccessLog",
        False,
        "gunicorn's own access log in each API container",
        Docs("gunicorn's own access log; off because the proxy logs every request with its id"),
    ),
    one_of(
        "apiRuntime",
        "the API's Python: CPython, or PyPy (a JIT compiler)",
        API_RUNTIMES,
        "cpython",
        Docs(
            "the API's Python: CPython, or PyPy, whose JIT compiler runs this pure-Python stack"
            " about twice as fast (see [PyPy](pypy.md)); needs `apiMemoryMb`"
            f" {PYPY_MEMORY_MB} or more",
            top=True,
        ),
    ),
    text(
        "networkSubnet",
        "the stack's private Docker network",
        f"a private IPv4 network address with a prefix from /{SUBNET_PREFIXES[0]} to"
        f" /{SUBNET_PREFIXES[1]} (e.g. {DEFAULT_SUBNET}), not used by another Docker network",
        _is_private_subnet,
        default=DEFAULT_SUBNET,
        constraint=f"a private IPv4 network, /{SUBNET_PREFIXES[0]} to /{SUBNET_PREFIXES[1]}",
        docs=Docs(
            "the stack's private network (gunicorn trusts forwarded headers from it only); give"
            " every stack on one engine its own (Docker refuses an overlap and names it)"
        ),
    ),
    integer(
        "apiMemoryMb",
        256,
        64,
        65536,
        "memory limit of each API container, MiB",
        Docs(top=True),
    ),
    integer("proxyMemoryMb", 128, 32, 65536, "memory limit of the proxy container, MiB"),
    integer(
        "processLimit",
        512,
        32,
        65536,
        "processes and threads of the stack's API containers on a host together, and of its"
        " proxy's (RLIMIT_NPROC of each role's own uid)",
        Docs(
            "processes and threads of the stack's API containers on one host together, and"
            " separately of its proxy's: `RLIMIT_NPROC` of each role's own uid (see [Process"
            " limit](deploys.md#process-limit)); must cover a deploy's old and new API"
            " containers side by side, which the program checks"
        ),
    ),
    integer(
        "rateLimitPerSecond",
        0,
        0,
        100000,
        "requests per second per client address; 0 = off",
        Docs(
            "requests per second per client address at the proxy (0 = off); beyond it, 429"
            " with a JSON body"
        ),
    ),
    text_list(
        "loadBalancerAddresses",
        "addresses of a load balancer in front, whose X-Forwarded-For and -Proto the proxy"
        " believes; unset: none",
        "IPv4 or IPv6 addresses or networks without host bits (e.g. 10.0.0.5,10.1.0.0/16), not /0",
        _is_trusted_network,
        default=None,
        docs=Docs(
            "a load balancer in front (see [HTTPS](https.md), `off`): only from these"
            " does the proxy believe `X-Forwarded-For` (the client's address, for the rate limit"
            " and the log) and `X-Forwarded-Proto` (the scheme the API sees)",
            example="10.0.0.5,10.0.1.0/24",
        ),
    ),
    text(
        "apiBaseImage",
        "base image of the API image; empty for the Dockerfile's own",
        _IMAGE,
        _is_image_reference,
        constraint="an image reference",
        docs=Docs(
            "base of the API image (`BASE_IMAGE` build arg); a new image under the same name"
            " rebuilds",
            unset="the Dockerfile's",
            example="registry.example.com:5000/team/python:3.14-slim-trixie",
        ),
    ),
    text(
        "proxyBaseImage",
        "base image of the proxy image; empty for the Dockerfile's own",
        _IMAGE,
        _is_image_reference,
        constraint="an image reference",
        docs=Docs(
            "base of the proxy image; its nginx must be 1.27.3 or later (`resolve` on upstream"
            " servers)",
            unset="the Dockerfile's",
            example="registry.example.com:5000/team/nginx:1.30-trixie",
        ),
    ),
    text(
        "imagePlatform",
        "platform the images are built for",
        "a Linux platform such as linux/amd64 or linux/arm64",
        lambda value: PLATFORM.match(value) is not None,
        default="linux/amd64",
        constraint="`linux/<arch>`",
        docs=Docs("platform the images are built for (pinned so state is the same everywhere)"),
    ),
    one_of(
        "tlsMode",
        "HTTPS at the proxy: the stack's own CA, your certificate, or none",
        TLS_MODES,
        "self-signed",
        Docs(
            "HTTPS at the proxy (see [HTTPS](https.md)): a CA and certificate made for"
            " the stack, your own certificate, or plain HTTP",
            top=True,
        ),
    ),
    text_list(
        "tlsHostNames",
        "names clients use, in the certificate; unset: localhost and the bind address",
        "DNS names and IP addresses (e.g. api.example.com,localhost,127.0.0.1)",
        tls_certificates.is_host_name,
        default=None,
        docs=Docs(
            "the names clients use; the certificate is valid for each (a provided one must be)",
            unset="localhost and the bind address",
            example="api.example.com,localhost,127.0.0.1",
            top=True,
        ),
    ),
    text(
        "tlsCertificate",
        "with tlsMode provided: the PEM certificate chain, leaf first",
        "a PEM certificate chain",
        lambda value: "-----BEGIN" in value,
        secret=True,
        constraint="a PEM certificate chain, leaf first",
        docs=Docs(
            "with `provided`: the certificate, set with `--secret` like the key (it is public:"
            " a plain value is accepted too)"
        ),
    ),
    text(
        "tlsPrivateKey",
        "with tlsMode provided: the certificate's PEM private key",
        "a PEM private key",
        lambda value: "-----BEGIN" in value,
        secret=True,
        constraint="a PEM private key (RSA 2048+ or ECDSA P-256/P-384), unencrypted",
        docs=Docs("with `provided`: its key; refused when not a secret"),
    ),
    boolean(
        "hstsIncludeSubDomains",
        False,
        "with tlsMode provided: HSTS covers every subdomain of the names too (includeSubDomains)",
        Docs(
            "with `provided`: the HSTS header adds `includeSubDomains`, so browsers refuse plain"
            " HTTP on every subdomain of the names for two years; refused with other modes"
        ),
    ),
    integer(
        "httpRedirectPort",
        0,
        0,
        65535,
        "host port of a plain-HTTP redirect to HTTPS; 0 = none",
        Docs(
            "a plain-HTTP port that answers only `/healthz` and a 308 redirect to HTTPS (0 ="
            " none); not `proxyPort`"
        ),
    ),
    text(
        "publicHost",
        "host name or address clients reach the proxy at; unset: the bind address (swarm:"
        " localhost)",
        "a DNS name or an IP address (e.g. api.example.com)",
        tls_certificates.is_host_name,
        constraint="a DNS name or IP address",
        docs=Docs(
            "the host clients reach the proxy at, in the `url` output and first in the"
            " certificate: set it when the engine is remote (`docker:host`) or behind a name",
            unset="the bind address (swarm: `localhost`)",
            example="api.example.com",
            top=True,
        ),
    ),
    one_of(
        "orchestrator",
        "containers on one Docker engine, or services on a Docker Swarm (docker:host: its manager)",
        ORCHESTRATORS,
        "engine",
        Docs(
            "containers on one Docker engine, or services on a Docker Swarm whose manager is"
            " `docker:host` (see [Docker Swarm](swarm.md))"
        ),
    ),
    text(
        "imageRegistry",
        "swarm: registry the images are pushed to and every node pulls from; unset: images stay"
        " on the engine that builds them (a one-node swarm)",
        "a registry host[:port] with an optional path, no scheme"
        " (e.g. registry.example.com:5000/team)",
        lambda value: len(value) <= 200 and REGISTRY.match(value) is not None,
        constraint="a registry `host[:port][/path]`",
        docs=Docs(
            "swarm: the registry the images are pushed to and every node pulls them from, by"
            " digest; unset, the images stay on the engine that builds them (a one-node swarm)",
            example="registry.example.com:5000/team",
        ),
    ),
    integer("proxyReplicas", 1, 1, 64, "swarm: nodes that run a proxy (one per node)"),
    text_list(
        "proxyConstraints",
        "swarm: placement constraints of the proxy's nodes",
        "Swarm constraints such as node.role==manager or node.labels.edge==true",
        lambda value: CONSTRAINT.match(value) is not None,
        default=None,
        docs=Docs(
            "swarm: which nodes may run the proxy, e.g. `node.role==manager` or"
            " `node.labels.edge==true`",
            unset="any node",
            example="node.role==manager",
        ),
    ),
    boolean(
        "overlayEncrypted",
        False,
        "swarm: IPsec between nodes on the stack's overlay network (needs the kernel's ESP)",
        Docs(
            "swarm: IPsec between nodes on the stack's overlay network; needs the kernel's ESP"
            " support and IP protocol 50 between nodes"
        ),
    ),
)
KEYS_BY_NAME: Final = {key.name: key for key in KEYS}
