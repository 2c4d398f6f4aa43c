"""RestApiStack: the Flask-Rebar API behind nginx on a private Docker network.

A ComponentResource, so other Pulumi programs can reuse the whole stack with one line.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pulumi
import pulumi_docker as docker

import contract
import swarm
from config_problems import ConfigProblem
from health_gate import ContainerHealthy
from instance_specs import (
    API_RUNTIMES,
    API_STOP_GRACE_SECONDS,
    LOG_DRIVER,
    PROXY_STOP_GRACE_SECONDS,
    PROXY_SYSCTLS,
    TMPFS_OPTIONS,
    ProxyTls,
    RestApiStackArgs,
    api_environment,
    gateway,
    labels,
    proxy_environment,
    proxy_tls,
    proxy_url,
)
from settings import Settings, config_error

REPO_ROOT = Path(__file__).resolve().parent.parent
# A new container must report healthy within this long, or the deploy fails (and the previous
# release keeps serving: see RestApiStack). It fails sooner when Docker calls it unhealthy.
HEALTHY_WITHIN_SECONDS = 60


def build_context(directory: str) -> str:
    """A build context relative to the working directory (Pulumi runs the program in `main`).

    Relative, so the state is the same on every machine and no diff appears from a checkout
    in another place.
    """
    return os.path.relpath(REPO_ROOT / directory, Path.cwd())


def dockerfile_base_image(context: str, root: Path = REPO_ROOT) -> str:
    """The base image a Dockerfile builds on when none is configured: its `ARG BASE_IMAGE=`."""
    dockerfile = (root / context / "Dockerfile").read_text()
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    if match is None:
        raise ValueError(f"{context}/Dockerfile has no default base image (ARG BASE_IMAGE=...)")
    return match.group(1)


# Each image's build context and the config key that names its base image.
CONTEXTS: dict[str, str] = {"api": contract.API_CONTEXT, "proxy": contract.PROXY_CONTEXT}
BASE_IMAGE_KEYS: dict[str, str] = {"api": "apiBaseImage", "proxy": "proxyBaseImage"}


@dataclass(frozen=True)
class BaseImage:
    name: str
    # The engine's id of it; "" when it is not in the engine's image store.
    engine_id: str


def registry_host(name: str) -> str | None:
    """The registry host of an image reference as Docker reads it (the first component when it
    has a dot or a port or is localhost), without its port; None: Docker Hub."""
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.split(":", 1)[0].lower()
    return None


def is_local_only(name: str) -> bool:
    """Whether the image is named under a registry that cannot exist (contract.py)."""
    host = registry_host(name)
    return host is not None and host.endswith(contract.LOCAL_ONLY_REGISTRY_DOMAIN)


def base_image_name(settings: Settings, role: str) -> str:
    """The base image of role's image: configured, the API runtime's, or the Dockerfile's."""
    configured = {
        "api": settings.api_base_image or API_RUNTIMES[settings.api_runtime].base_image,
        "proxy": settings.proxy_base_image,
    }[role]
    return configured or dockerfile_base_image(CONTEXTS[role])


def base_image_id(name: str, opts: pulumi.InvokeOptions) -> str | None:
    """The engine's id of an image, or None when it isn't in the engine's image store."""
    try:
        return str(docker.get_remote_image(name=name, opts=opts).id)
    except Exception as error:  # the invoke raises a plain Exception with the provider's text
        if "did not find docker image" not in str(error):
            raise
    return None


def base_images(settings: Settings, opts: pulumi.InvokeOptions) -> dict[str, BaseImage]:
    """Each role's base image and the engine's id of it. A local-only one (is_local_only) that
    the engine lacks is a ConfigError: no registry can stand in for it. Any other one missing
    is pulled by the build; a registry image a BuildKit build pulled lives in the build cache
    only, so a newer one under the same name can't be noticed: that is a warning."""
    found: dict[str, BaseImage] = {}
    problems = []
    for role, key in BASE_IMAGE_KEYS.items():
        name = base_image_name(settings, role)
        engine_id = base_image_id(name, opts)
        found[role] = BaseImage(name, engine_id or "")
        if engine_id is not None:
            continue
        if is_local_only(name):
            problems.append(
                ConfigProblem(
                    key,
                    f"base image {name} is not on the Docker engine, and no registry can serve"
                    f" it (its registry is under {contract.LOCAL_ONLY_REGISTRY_DOMAIN}: made on"
                    " this host only). Build it with `make base-images`, or set another image",
                )
            )
        else:
            pulumi.log.warn(
                f"base image {name} is not in the Docker engine's image store: a newer image"
                " under this name will not rebuild the stack's image. `docker pull` it, or pin"
                " it by digest (name@sha256:...)."
            )
    if problems:
        raise config_error(problems)
    return found


def docker_provider(opts: pulumi.ResourceOptions | None) -> pulumi.ProviderResource | None:
    """The docker provider given to a component in `opts` (provider or providers), if any: what
    its children use."""
    if opts is None:
        return None
    given = [opts.provider] if opts.provider is not None else []
    if isinstance(opts.providers, Mapping):
        given += list(opts.providers.values())
    elif opts.providers:
        given += list(opts.providers)
    return next((provider for provider in given if provider.package == "docker"), None)


def published(settings: Settings, internal: int, external: int) -> docker.ContainerPortArgs:
    """A proxy port published on the host, on the configured address only."""
    return docker.ContainerPortArgs(
        internal=internal,
        external=external,
        ip=settings.proxy_bind_address,
        protocol="tcp",
    )


class RestApiStack(pulumi.ComponentResource):
    """The API and proxy images, and the stack on the orchestrator `orchestrator` names.

    On one Docker engine (`engine`, the default): a bridge network, `apiReplicas` API
    containers and one proxy container publishing `proxyPort` on `proxyBindAddress`, each
    container followed by a health gate. Deploys after the first replace API containers without
    downtime: each API container is auto-named (its logical name plus a random suffix), so a
    changed one is replaced create-before-delete: the new container starts beside the old one,
    Pulumi waits for it to be healthy, and removes the old one (gracefully) only at the end of
    the deployment. The proxy follows the containers by their network alias, so it is never
    changed for them. A release that never becomes healthy fails the deploy, and the old
    containers keep serving. The proxy owns the published port: a change to it replaces it
    delete-first (a short gap).

    On a Docker Swarm (`swarm`): an overlay network, the API and proxy as services and, with
    HTTPS, the certificate and key as Docker secrets; swarm.py says how they deploy.

    With tlsMode self-signed, both add the stack's CA and the proxy's certificate (stack_ca.py).
    """

    url: pulumi.Output[str]
    # With tlsMode self-signed: the stack's CA certificate, else None.
    ca_certificate: pulumi.Output[str] | None
    # With httpRedirectPort: the plain-HTTP URL that redirects to `url`, else None.
    http_redirect_url: pulumi.Output[str] | None
    api_image: pulumi.Output[str]
    proxy_image: pulumi.Output[str]
    network_name: pulumi.Output[str]
    # On one engine: the containers' names; on a swarm: the services'.
    api_container_names: pulumi.Output[list[str]] | None
    proxy_container_name: pulumi.Output[str] | None
    api_service_name: pulumi.Output[str] | None
    proxy_service_name: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: RestApiStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        settings = args.settings
        # Before the component registers: a local-only base image the engine lacks fails here,
        # with nothing registered. The invokes go to the docker provider its children use.
        parent = opts.parent if opts is not None else None
        bases = base_images(
            settings, pulumi.InvokeOptions(parent=parent, provider=docker_provider(opts))
        )
        super().__init__("pulumi-flask-rebar:index:RestApiStack", name, None, opts)
        api_image = self._image(f"{name}-api-image", args, "api", bases["api"])
        proxy_image = self._image(f"{name}-proxy-image", args, "proxy", bases["proxy"])
        url = proxy_url(settings)
        tls = proxy_tls(name, settings.tls, self)
        self.ca_certificate = tls.ca_certificate if tls is not None else None
        self.api_container_names = self.proxy_container_name = None
        self.api_service_name = self.proxy_service_name = None
        if settings.swarm:
            services = swarm.deploy(
                swarm.SwarmArgs(
                    name=name,
                    stack=args,
                    api_image=api_image.repo_digest,
                    proxy_image=proxy_image.repo_digest,
                    proxy_environment=proxy_environment(settings, url, tls),
                    tls=tls,
                ),
                parent=self,
            )
            self.network_name = services.network_name
            self.api_service_name = services.api_service_name
            self.proxy_service_name = services.proxy_service_name
        else:
            self._engine(name, args, api_image, proxy_image, url, tls)

        self.url = pulumi.Output.from_input(url)
        self.http_redirect_url = None
        if settings.http_redirect_port:
            host = urlsplit(url).netloc.rsplit(":", 1)[0]
            redirect = f"http://{host}:{settings.http_redirect_port}"
            self.http_redirect_url = pulumi.Output.from_input(redirect)
        self.api_image = api_image.repo_digest
        self.proxy_image = proxy_image.repo_digest
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
                "api_service_name": self.api_service_name,
                "proxy_service_name": self.proxy_service_name,
            }
        )

    def _engine(
        self,
        name: str,
        args: RestApiStackArgs,
        api_image: docker.Image,
        proxy_image: docker.Image,
        url: str,
        tls: ProxyTls | None,
    ) -> None:
        """The stack as containers on one Docker engine."""
        settings = args.settings
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
                for key, value in labels(args.labels, contract.ROLE_NETWORK).items()
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        api_containers = [
            self._container(
                f"{name}-api-{index}",
                args,
                role=contract.ROLE_API,
                image=api_image,
                envs=[f"{key}={value}" for key, value in api_environment(settings).items()],
                network=docker.ContainerNetworksAdvancedArgs(
                    name=network.name, aliases=[contract.API_ALIAS]
                ),
                memory_mb=settings.api_memory_mb,
                user=args.users.api,
                stop_grace_seconds=API_STOP_GRACE_SECONDS,
                # No fixed name: pulumi-docker then names it `<logical name>-<7 hex>`, and the
                # replacement can start before the old one is removed. (pulumi-docker asks for
                # delete-first on every container; this option overrides it.)
                opts=pulumi.ResourceOptions(delete_before_replace=False),
            )
            for index in range(1, settings.api_replicas + 1)
        ]
        api_healthy = [self._healthy(container) for container in api_containers]

        envs: list[pulumi.Input[str]] = [
            f"{key}={value}" for key, value in proxy_environment(settings, url, tls).items()
        ]
        if tls is not None:
            # The key as a secret; the proxy writes both to its tmpfs and drops them from its
            # environment (proxy/entrypoint.sh).
            envs.append(tls.certificate.apply(lambda pem: f"TLS_CERTIFICATE={pem.strip()}"))
            envs.append(tls.private_key.apply(lambda pem: f"TLS_PRIVATE_KEY={pem.strip()}"))
        served = contract.PROXY_HTTPS_PORT if settings.tls.enabled else contract.PROXY_HTTP_PORT
        ports = [published(settings, served, settings.proxy_port)]
        if settings.http_redirect_port:
            ports.append(published(settings, contract.PROXY_HTTP_PORT, settings.http_redirect_port))
        proxy = self._container(
            f"{name}-proxy",
            args,
            role=contract.ROLE_PROXY,
            image=proxy_image,
            envs=envs,
            network=docker.ContainerNetworksAdvancedArgs(name=network.name),
            memory_mb=settings.proxy_memory_mb,
            user=args.users.proxy,
            ports=ports,
            sysctls=PROXY_SYSCTLS,
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
        self.network_name = network.name
        self.api_container_names = pulumi.Output.all(*[c.name for c in api_containers])
        self.proxy_container_name = proxy.name

    def _healthy(self, container: docker.Container) -> ContainerHealthy:
        """The deploy goes on once the container is healthy, or fails saying why (a new
        container, when it replaces one, comes with a new wait)."""
        return ContainerHealthy(
            f"{container.pulumi_resource_name}-healthy",
            container.id,
            HEALTHY_WITHIN_SECONDS,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _image(
        self, resource_name: str, args: RestApiStackArgs, role: str, base: BaseImage
    ) -> docker.Image:
        settings = args.settings
        context = CONTEXTS[role]
        runtime = API_RUNTIMES[settings.api_runtime]
        # The API's interpreter (CPython or PyPy); the proxy's Dockerfile has no such argument.
        interpreter = (
            {"PYTHON": runtime.python, "SOURCE_BUILDS": runtime.source_builds}
            if role == "api"
            else {}
        )
        registry = settings.image_registry
        repository = f"{args.name_prefix}-{role}:{args.image_tag}"
        return docker.Image(
            resource_name,
            image_name=f"{registry}/{repository}" if registry else repository,
            build=docker.DockerBuildArgs(
                context=build_context(context),
                dockerfile=build_context(f"{context}/Dockerfile"),
                platform=args.settings.image_platform,
                # The base by name and by the engine's id of it: pulumi-docker compares the
                # build's files and arguments, never the base image itself, so a new base
                # under the same name (rebuilt, or a newer one pulled) rebuilds only this way.
                args={"BASE_IMAGE": base.name, "BASE_IMAGE_ID": base.engine_id, **interpreter},
            ),
            # Without a registry the images stay on the engine that built them, which runs
            # them (one engine, or a one-node swarm). With one, every node pulls them from it,
            # by digest (the registry's login: pulumi-docker's `docker:registryAuth`).
            skip_push=registry is None,
            registry=docker.RegistryArgs(server=registry.split("/", 1)[0]) if registry else None,
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
            envs=envs,
            networks_advanced=[network],
            ports=ports,
            sysctls=sysctls,
            labels=[
                docker.ContainerLabelArgs(label=key, value=value)
                for key, value in labels(args.labels, role).items()
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
