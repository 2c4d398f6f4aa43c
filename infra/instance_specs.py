"""What every API and proxy instance runs with, whichever orchestrator runs it: environment,
limits, grace periods and the proxy's TLS material. rest_api_stack.py (containers on one engine)
and swarm.py (Swarm services) both build on these.
"""

import hashlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi

import contract
import stack_ca
from settings import Settings, Tls

# Size and options of the writable tmpfs on otherwise read-only root filesystems.
TMPFS_SIZE_BYTES = 16 * 1024 * 1024
TMPFS_OPTIONS = f"rw,noexec,nosuid,nodev,size={TMPFS_SIZE_BYTES // (1024 * 1024)}m"
# Docker's `local` log driver: rotated and compressed by default (5 files of 20 MB at most), so
# a chatty container can't fill the host's disk, with no options to declare (json-file needs
# them, and Docker merges a host's daemon.json `log-opts` into declared ones, which
# pulumi-docker then reads back as a change on every `pulumi up`).
LOG_DRIVER = "local"
# gunicorn's time for in-flight requests after SIGTERM, and the time Docker gives an API
# instance between SIGTERM and SIGKILL when a deploy removes it: the first stays below the
# second (after its workers exit, gunicorn lingers 2 s more, refusing connections), so a stop
# is graceful.
API_GRACEFUL_TIMEOUT_SECONDS = 8
API_STOP_GRACE_SECONDS = 15
# nginx's graceful stop (SIGQUIT, the image's STOPSIGNAL) lets requests in flight finish.
PROXY_STOP_GRACE_SECONDS = 10
# Beyond its keep-alive pool (bursts, replaced API instances), nginx opens upstream connections
# and closes them first: without reuse, TIME_WAIT fills its source ports under sustained load
# and throughput collapses (bench/results/results.md, "Sustained load"). Namespaced: the proxy's
# own network namespace only.
PROXY_SYSCTLS = {"net.ipv4.tcp_tw_reuse": "1"}


@dataclass(frozen=True)
class Runtime:
    """One of the API's Python runtimes (apiRuntime)."""

    # The base image when apiBaseImage is unset (None: the Dockerfile's own).
    base_image: str | None
    # The interpreter the image's virtualenv is made with (the PYTHON build argument).
    python: str
    # Packages without a wheel for it, built from source (the SOURCE_BUILDS build argument).
    source_builds: str
    # Requests each gunicorn worker sends its app in-process before it accepts, so that the JIT
    # has compiled the hot path before the worker takes traffic (docs/pypy.md has the curve).
    warmup_requests: int


API_RUNTIMES: dict[str, Runtime] = {
    "cpython": Runtime(None, "python3", "", 0),
    "pypy": Runtime("pypy:3.11-slim", "pypy3", "markupsafe", 2000),
}


@dataclass(frozen=True)
class StackUsers:
    """The uid:gid a stack runs its API instances and its proxy as (contract.STACK_UIDS)."""

    api: str
    proxy: str

    def of(self, role: str) -> str:
        return self.api if role == contract.ROLE_API else self.proxy


def stack_users(name_prefix: str) -> StackUsers:
    """A pair of uids of contract.STACK_UIDS picked by a hash of `name_prefix`
    ("<project>-<stack>"): the same on every run, and another for each stack but by chance
    (two stacks share a pair with a chance of 1 in 20,000)."""
    pairs = len(contract.STACK_UIDS) // 2
    digest = hashlib.sha256(name_prefix.encode()).digest()
    api = contract.STACK_UIDS[2 * (int.from_bytes(digest[:8], "big") % pairs)]
    return StackUsers(api=f"{api}:{api}", proxy=f"{api + 1}:{api + 1}")


@dataclass(frozen=True)
class RestApiStackArgs:
    settings: Settings
    # Prefix of every Docker object name and image repository, e.g. "<project>-<stack>":
    # two stacks on one host must not share one.
    name_prefix: str
    # Tag of the two images; a stack's own tag keeps stacks from retagging each other's images.
    image_tag: str
    # Labels put on every Docker object (network, images' containers), e.g. project and stack.
    labels: dict[str, str]

    @property
    def users(self) -> StackUsers:
        """The stack's own uids, one per role (its processLimit bounds each on a host)."""
        return stack_users(self.name_prefix)


@dataclass(frozen=True)
class ProxyTls:
    """The proxy's certificate chain and key (PEM; the key a secret), and with a CA of the
    stack's own its certificate (what clients verify the proxy by)."""

    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]
    ca_certificate: pulumi.Output[str] | None
    # Browsers remember HSTS and then refuse a certificate they don't trust, with no way past
    # the warning: only for a provided (trusted) certificate.
    hsts: bool


def proxy_tls(name: str, tls: Tls, parent: pulumi.Resource) -> ProxyTls | None:
    """The proxy's TLS material: given in config, or issued by the stack's own CA; None for
    plain HTTP."""
    if tls.mode == "off":
        return None
    if tls.mode == "provided":
        assert tls.certificate is not None and tls.private_key is not None  # settings checks
        return ProxyTls(
            pulumi.Output.from_input(tls.certificate),
            pulumi.Output.secret(tls.private_key),
            None,
            hsts=True,
        )
    issued = stack_ca.issue(name, name, tls.host_names, parent)
    return ProxyTls(
        issued.certificate,
        pulumi.Output.secret(issued.private_key),
        issued.ca_certificate,
        hsts=False,
    )


def api_environment(settings: Settings) -> dict[str, str]:
    """The API instances' environment."""
    return {
        "PORT": str(contract.API_PORT),
        "API_HEALTH_PATH": contract.API_HEALTH_PATH,
        "WEB_CONCURRENCY": str(settings.api_workers),
        "GUNICORN_THREADS": str(settings.api_threads),
        "GUNICORN_GRACEFUL_TIMEOUT": str(API_GRACEFUL_TIMEOUT_SECONDS),
        "GUNICORN_WARMUP_REQUESTS": str(API_RUNTIMES[settings.api_runtime].warmup_requests),
        "GUNICORN_WARMUP_PATH": contract.API_WARMUP_PATH,
        # Off by default: the proxy logs every request, with the same request id, and a second
        # line per request costs the API a third of its CPU.
        "GUNICORN_ACCESS_LOG": "on" if settings.api_access_log else "off",
        # Only peers on the stack's own network may set X-Forwarded-* for gunicorn.
        "FORWARDED_ALLOW_IPS": settings.network_subnet,
        # The process limit each image applies itself (see gunicorn.conf.py, entrypoint.sh).
        "PROCESS_LIMIT": str(settings.process_limit),
    }


def proxy_environment(settings: Settings, url: str, tls: ProxyTls | None) -> dict[str, str]:
    """The proxy's environment, but for its TLS material (which each orchestrator hands over
    its own way)."""
    environment = {
        # The API's name, which nginx resolves again every second: it follows the API instances
        # as deploys replace them, and the proxy never changes for them.
        "API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}",
        # The API sees this Host, never the client's (the spec's `host` comes from it).
        "PUBLIC_HOST": urlsplit(url).netloc,
        "RATE_LIMIT_RPS": str(settings.rate_limit_per_second),
        "PROCESS_LIMIT": str(settings.process_limit),
    }
    if tls is not None:
        environment["HSTS"] = "on" if tls.hsts else "off"
    if tls is not None and tls.hsts:
        # Off unless asked: browsers would then refuse plain HTTP on every subdomain of the
        # names for two years (settings refuses it without HSTS).
        include = settings.hsts_include_sub_domains
        environment["HSTS_INCLUDE_SUBDOMAINS"] = "on" if include else "off"
    if settings.load_balancer_addresses:
        # Only these peers' X-Forwarded-For and -Proto are believed (nginx's real_ip).
        environment["LOAD_BALANCER_ADDRESSES"] = ",".join(settings.load_balancer_addresses)
    return environment


def proxy_url(settings: Settings) -> str:
    """The URL clients use: the public host (by default the bind address, an all-interfaces
    bind via loopback), or with HTTPS the first host name when the certificate doesn't name it."""
    host, tls = settings.host, settings.tls
    if tls.enabled and host not in tls.host_names:
        host = tls.host_names[0]
    bracketed = f"[{host}]" if ":" in host else host
    return f"{'https' if tls.enabled else 'http'}://{bracketed}:{settings.proxy_port}"


def labels(common: dict[str, str], role: str) -> dict[str, str]:
    """The labels of one of the stack's objects: the stack's, and its role."""
    return dict(sorted({**common, contract.LABEL_ROLE: role}.items()))


def gateway(subnet: str) -> str:
    """The subnet's first address, which Docker would pick anyway. Declared, so that what the
    provider reads back from the network equals the inputs and no change is ever planned."""
    return str(ipaddress.ip_network(subnet)[1])
