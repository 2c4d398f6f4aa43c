"""RestApiStack: the Flask-Rebar API behind nginx on a private Docker network.

A ComponentResource, so other Pulumi programs can reuse the whole stack with one line.
"""

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pulumi
import pulumi_docker as docker

import contract
import stack_ca
from health_gate import ContainerHealthy
from settings import Settings, Tls, local_address

REPO_ROOT = Path(__file__).resolve().parent.parent
# Sizes of the writable tmpfs mounts on otherwise read-only root filesystems.
TMPFS_OPTIONS = "rw,noexec,nosuid,nodev,size=16m"
# Docker's `local` log driver: rotated and compressed by default (5 files of 20 MB at most), so
# a chatty container can't fill the host's disk, with no options to declare (json-file needs
# them, and Docker merges a host's daemon.json `log-opts` into declared ones, which
# pulumi-docker then reads back as a change on every `pulumi up`).
LOG_DRIVER = "local"
# A new container must report healthy within this long, or the deploy fails (and the previous
# release keeps serving: see RestApiStack). It fails sooner when Docker calls it unhealthy.
HEALTHY_WITHIN_SECONDS = 60
# gunicorn's time for in-flight requests after SIGTERM, and the time Docker gives an API
# container between SIGTERM and SIGKILL when the deploy removes it: the first stays below the
# second (after its workers exit, gunicorn lingers 2 s more, refusing connections), so a stop
# is graceful.
API_GRACEFUL_TIMEOUT_SECONDS = 8
API_STOP_GRACE_SECONDS = 15


@dataclass(frozen=True)
class Runtime:
    """One of the API's Python runtimes (apiRuntime)."""

    # The base image when apiBaseImage is unset (None: the Dockerfile's own).
    base_image: str | None
    # The interpreter the image's virtualenv is made with (the PYTHON build argument).
    python: str
    # Packages without a wheel for it, built from source (the SOURCE_BUILDS build argument).
    source_builds: str
    # Requests gunicorn sends the app in-process before it listens, for the JIT to compile the
    # hot path: measured, a PyPy worker then reaches full speed in about 5 s rather than 9.
    warmup_requests: int


API_RUNTIMES: dict[str, Runtime] = {
    "cpython": Runtime(None, "python3", "", 0),
    "pypy": Runtime("pypy:3.11-slim", "pypy3", "markupsafe", 2000),
}
# nginx's graceful stop (SIGQUIT, the image's STOPSIGNAL) lets requests in flight finish.
PROXY_STOP_GRACE_SECONDS = 10


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


def build_context(directory: str) -> str:
    """A build context relative to the working directory (Pulumi runs the program in `main`).

    Relative, so the state is the same on every machine and no diff appears from a checkout
    in another place.
    """
    return os.path.relpath(REPO_ROOT / directory, Path.cwd())


def dockerfile_base_image(context: str) -> str:
    """The base image a Dockerfile builds on when none is configured: its `ARG BASE_IMAGE=`."""
    dockerfile = (REPO_ROOT / context / "Dockerfile").read_text()
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    if match is None:
        raise ValueError(f"{context}/Dockerfile has no default base image (ARG BASE_IMAGE=...)")
    return match.group(1)


def base_image_id(name: str, opts: pulumi.InvokeOptions) -> str:
    """The engine's id of a base image, or "" when it isn't in the engine's image store: a
    registry image a BuildKit build pulled lives in the build cache only, so a newer one under
    the same name can't be noticed (`docker pull` it, or pin it by digest)."""
    try:
        return str(docker.get_remote_image(name=name, opts=opts).id)
    except Exception as error:  # the invoke raises a plain Exception with the provider's text
        if "did not find docker image" not in str(error):
            raise
    pulumi.log.warn(
        f"base image {name} is not in the Docker engine's image store: a newer image under"
        " this name will not rebuild the stack's image. `docker pull` it, or pin it by digest"
        " (name@sha256:...)."
    )
    return ""


def proxy_url(bind_address: str, port: int, tls: Tls) -> str:
    """The URL clients use: the bind address (an all-interfaces bind via loopback), or with
    HTTPS the first host name when the certificate doesn't name the address."""
    address = local_address(bind_address)
    host = f"[{address}]" if address.version == 6 else str(address)
    if not tls.enabled:
        return f"http://{host}:{port}"
    if str(address) not in tls.host_names:
        host = tls.host_names[0]
        host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port}"


def published(settings: Settings, internal: int, external: int) -> docker.ContainerPortArgs:
    """A proxy port published on the host, on the configured address only."""
    return docker.ContainerPortArgs(
        internal=internal,
        external=external,
        ip=settings.proxy_bind_address,
        protocol="tcp",
    )


def proxy_tls(
    name: str, tls: Tls, parent: pulumi.Resource
) -> tuple[list[pulumi.Input[str]], pulumi.Output[str] | None]:
    """The proxy's TLS environment (the key as a secret) and, with a CA of the stack's own,
    its certificate: none, for plain HTTP."""
    if tls.mode == "off":
        return [], None
    if tls.mode == "provided":
        assert tls.certificate is not None and tls.private_key is not None  # settings checks
        certificate: pulumi.Output[str] = pulumi.Output.from_input(tls.certificate)
        private_key: pulumi.Output[str] = pulumi.Output.from_input(tls.private_key)
        ca_certificate = None
    else:
        issued = stack_ca.issue(name, name, tls.host_names, parent)
        certificate, private_key = issued.certificate, issued.private_key
        ca_certificate = issued.ca_certificate
    envs: list[pulumi.Input[str]] = [
        certificate.apply(lambda pem: f"TLS_CERTIFICATE={pem.strip()}"),
        pulumi.Output.secret(private_key.apply(lambda pem: f"TLS_PRIVATE_KEY={pem.strip()}")),
        # Browsers remember HSTS and then refuse a certificate they don't trust, with no way
        # past the warning: only for a provided (trusted) certificate.
        f"HSTS={'on' if tls.mode == 'provided' else 'off'}",
    ]
    return envs, ca_certificate


def gateway(subnet: str) -> str:
    """The subnet's first address, which Docker would pick anyway. Declared, so that what the
    provider reads back from the network equals the inputs and no change is ever planned."""
    return str(ipaddress.ip_network(subnet)[1])


class RestApiStack(pulumi.ComponentResource):
    """A bridge network, the API and proxy images, `apiReplicas` API containers and the proxy.

    Deploys after the first replace API containers without downtime: each API container is
    auto-named (its logical name plus a random suffix), so a changed one is replaced
    create-before-delete: the new container starts beside the old one, Pulumi waits for it to
    be healthy, and removes the old one (gracefully) only at the end of the deployment. The
    proxy follows the containers by their network alias, so it is never changed for them.
    A release that never becomes healthy fails the deploy, and the old containers keep serving.
    The proxy owns the published port: a change to it replaces it delete-first (a short gap).
    """

    url: pulumi.Output[str]
    # With tlsMode self-signed: the stack's CA certificate, else None.
    ca_certificate: pulumi.Output[str] | None
    # With httpRedirectPort: the plain-HTTP URL that redirects to `url`, else None.
    http_redirect_url: pulumi.Output[str] | None
    api_image: pulumi.Output[str]
    proxy_image: pulumi.Output[str]
    network_name: pulumi.Output[str]
    api_container_names: pulumi.Output[list[str]]
    proxy_container_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: RestApiStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pulumi-flask-rebar:index:RestApiStack", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        network = docker.Network(
            f"{name}-network",
            name=f"{args.name_prefix}-net",
            driver="bridge",
            ipam_configs=[
                docker.NetworkIpamConfigArgs(
                    subnet=settings.network_subnet,
                    gateway=gateway(settings.network_subnet),
                )
            ],
            labels=[
                docker.NetworkLabelArgs(label=key, value=value)
                for key, value in self._labels(args, contract.ROLE_NETWORK).items()
            ],
            opts=child,
        )

        api_image = self._image(f"{name}-api-image", args, contract.API_CONTEXT, "api")
        proxy_image = self._image(f"{name}-proxy-image", args, contract.PROXY_CONTEXT, "proxy")

        api_containers = [
            self._container(
                f"{name}-api-{index}",
                args,
                role=contract.ROLE_API,
                image=api_image,
                envs=[
                    f"PORT={contract.API_PORT}",
                    f"API_HEALTH_PATH={contract.API_HEALTH_PATH}",
                    f"WEB_CONCURRENCY={settings.api_workers}",
                    f"GUNICORN_THREADS={settings.api_threads}",
                    f"GUNICORN_GRACEFUL_TIMEOUT={API_GRACEFUL_TIMEOUT_SECONDS}",
                    f"GUNICORN_WARMUP_REQUESTS={API_RUNTIMES[settings.api_runtime].warmup_requests}",
                    # Off by default: the proxy logs every request, with the same request id,
                    # and a second line per request costs the API a third of its CPU.
                    f"GUNICORN_ACCESS_LOG={'on' if settings.api_access_log else 'off'}",
                    # Only peers on the stack's own network may set X-Forwarded-* for gunicorn.
                    f"FORWARDED_ALLOW_IPS={settings.network_subnet}",
                ],
                network=docker.ContainerNetworksAdvancedArgs(
                    name=network.name, aliases=[contract.API_ALIAS]
                ),
                memory_mb=settings.api_memory_mb,
                user=contract.API_USER,
                stop_grace_seconds=API_STOP_GRACE_SECONDS,
                # No fixed name: pulumi-docker then names it `<logical name>-<7 hex>`, and the
                # replacement can start before the old one is removed. (pulumi-docker asks for
                # delete-first on every container; this option overrides it.)
                opts=pulumi.ResourceOptions(delete_before_replace=False),
            )
            for index in range(1, settings.api_replicas + 1)
        ]
        api_healthy = [self._healthy(container) for container in api_containers]

        url = proxy_url(settings.proxy_bind_address, settings.proxy_port, settings.tls)
        tls_envs, self.ca_certificate = proxy_tls(name, settings.tls, self)
        served = contract.PROXY_HTTPS_PORT if settings.tls.enabled else contract.PROXY_HTTP_PORT
        ports = [published(settings, served, settings.proxy_port)]
        if settings.http_redirect_port:
            ports.append(published(settings, contract.PROXY_HTTP_PORT, settings.http_redirect_port))
        proxy = self._container(
            f"{name}-proxy",
            args,
            role=contract.ROLE_PROXY,
            image=proxy_image,
            envs=[
                # The alias, which nginx resolves again every second: it follows the API
                # containers as deploys replace them, and the proxy never changes for them.
                f"API_UPSTREAM={contract.API_ALIAS}:{contract.API_PORT}",
                # The API sees this Host, never the client's (the spec's `host` comes from it).
                f"PUBLIC_HOST={urlsplit(url).netloc}",
                f"RATE_LIMIT_RPS={settings.rate_limit_per_second}",
                *tls_envs,
            ],
            network=docker.ContainerNetworksAdvancedArgs(name=network.name),
            memory_mb=settings.proxy_memory_mb,
            user=contract.PROXY_USER,
            ports=ports,
            # Beyond its keep-alive pool (bursts, replaced API containers), nginx opens upstream
            # connections and closes them first: without reuse, TIME_WAIT fills its source
            # ports under sustained load and throughput collapses (bench/results/results.md,
            # "Sustained load"). Namespaced: this container only.
            sysctls={"net.ipv4.tcp_tw_reuse": "1"},
            stop_grace_seconds=PROXY_STOP_GRACE_SECONDS,
            opts=pulumi.ResourceOptions(
                # A fixed name: it owns the published port, which the old container must
                # release before a new one can bind it, so it is replaced delete-first.
                delete_before_replace=True,
                # After the API containers are healthy, so the proxy starts with a healthy API.
                # (Only an ordering: replacing an API container never touches the proxy.)
                depends_on=api_healthy,
            ),
            docker_name=f"{args.name_prefix}-proxy",
        )
        self._healthy(proxy)

        self.url = pulumi.Output.from_input(url)
        self.http_redirect_url = None
        if settings.http_redirect_port:
            host = urlsplit(url).netloc.rsplit(":", 1)[0]
            redirect = f"http://{host}:{settings.http_redirect_port}"
            self.http_redirect_url = pulumi.Output.from_input(redirect)
        self.api_image = api_image.repo_digest
        self.proxy_image = proxy_image.repo_digest
        self.network_name = network.name
        self.api_container_names = pulumi.Output.all(*[c.name for c in api_containers])
        self.proxy_container_name = proxy.name
        self.register_outputs(
            {
                "url": self.url,
                "ca_certificate": self.ca_certificate,
                "http_redirect_url": self.http_redirect_url,
                "api_image": self.api_image,
                "proxy_image": self.proxy_image,
                "network_name": self.network_name,
                "api_container_names": self.api_container_names,
                "proxy_container_name": self.proxy_container_name,
            }
        )

    def _healthy(self, container: docker.Container) -> ContainerHealthy:
        """The deploy goes on once the container is healthy, or fails saying why (a new
        container, when it replaces one, comes with a new wait)."""
        return ContainerHealthy(
            f"{container.pulumi_resource_name}-healthy",
            container.id,
            HEALTHY_WITHIN_SECONDS,
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _labels(args: RestApiStackArgs, role: str) -> dict[str, str]:
        return dict(sorted({**args.labels, contract.LABEL_ROLE: role}.items()))

    def _image(
        self, resource_name: str, args: RestApiStackArgs, context: str, role: str
    ) -> docker.Image:
        settings = args.settings
        runtime = API_RUNTIMES[settings.api_runtime]
        configured = {
            "api": settings.api_base_image or runtime.base_image,
            "proxy": settings.proxy_base_image,
        }[role]
        base_image = configured or dockerfile_base_image(context)
        # The API's interpreter (CPython or PyPy); the proxy's Dockerfile has no such argument.
        interpreter = (
            {"PYTHON": runtime.python, "SOURCE_BUILDS": runtime.source_builds}
            if role == "api"
            else {}
        )
        return docker.Image(
            resource_name,
            image_name=f"{args.name_prefix}-{role}:{args.image_tag}",
            build=docker.DockerBuildArgs(
                context=build_context(context),
                dockerfile=build_context(f"{context}/Dockerfile"),
                platform=args.settings.image_platform,
                # The base by name and by the engine's id of it: pulumi-docker compares the
                # build's files and arguments, never the base image itself, so a new base
                # under the same name (rebuilt, or a newer one pulled) rebuilds only this way.
                args={
                    "BASE_IMAGE": base_image,
                    "BASE_IMAGE_ID": base_image_id(base_image, pulumi.InvokeOptions(parent=self)),
                    **interpreter,
                },
            ),
            # Local images only: the containers run on the engine that built them.
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _container(
        self,
        resource_name: str,
        args: RestApiStackArgs,
        *,
        role: str,
        image: docker.Image,
        envs: list[pulumi.Input[str]],
        network: docker.ContainerNetworksAdvancedArgs,
        memory_mb: int,
        user: str,
        stop_grace_seconds: int,
        opts: pulumi.ResourceOptions,
        docker_name: str | None = None,
        ports: list[docker.ContainerPortArgs] | None = None,
        sysctls: dict[str, str] | None = None,
    ) -> docker.Container:
        """A container with what every container of the stack gets: least privilege,
        bounded resources and logs, a restart policy, a graceful stop, and replacement (never
        an update in place) for any change."""
        return docker.Container(
            resource_name,
            name=docker_name,
            # By digest: a rebuilt image replaces the container, an unchanged one doesn't.
            image=image.repo_digest,
            # The process limit each image applies itself (see gunicorn.conf.py, entrypoint.sh).
            envs=[*envs, f"PROCESS_LIMIT={args.settings.process_limit}"],
            networks_advanced=[network],
            ports=ports,
            sysctls=sysctls,
            labels=[
                docker.ContainerLabelArgs(label=key, value=value)
                for key, value in self._labels(args, role).items()
            ],
            user=user,
            read_only=True,
            tmpfs={"/tmp": TMPFS_OPTIONS},  # noqa: S108 (a private tmpfs mount point)
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges=true"],
            memory=memory_mb,
            restart="unless-stopped",
            log_driver=LOG_DRIVER,
            # Not pulumi-docker's wait (its error says only "failed to be in healthy state"):
            # ContainerHealthy waits instead, and says why.
            wait=False,
            # Removal stops the container first (its STOPSIGNAL, then SIGKILL after this long);
            # unset, pulumi-docker would kill it at once.
            destroy_grace_seconds=stop_grace_seconds,
            opts=pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(
                    parent=self,
                    # Some fields (memory, restart, tmpfs, ...) pulumi-docker would update in
                    # place, or only in its state: a replacement applies every change, and
                    # for the API containers without downtime.
                    replace_on_changes=["*"],
                    # Unset, Docker allows as much swap as memory where the kernel accounts
                    # swap (and reports 2 x memory) and can't limit it where it doesn't (-1):
                    # either way not what was declared, so not compared.
                    ignore_changes=["memorySwap"],
                ),
                opts,
            ),
        )
