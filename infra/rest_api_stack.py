"""RestApiStack: the Flask-Rebar API behind nginx on a private Docker network.

A ComponentResource, so other Pulumi programs can reuse the whole stack with one line.
"""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

import contract
from settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Sizes of the writable tmpfs mounts on otherwise read-only root filesystems.
TMPFS_OPTIONS = "rw,noexec,nosuid,nodev,size=16m"
# Bounded container logs, so a chatty container can't fill the host's disk.
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}


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


def proxy_url(bind_address: str, port: int) -> str:
    """The URL clients on this host use; an all-interfaces bind is reached via loopback."""
    address = ipaddress.ip_address(bind_address)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}"


class RestApiStack(pulumi.ComponentResource):
    url: pulumi.Output[str]
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
            labels=self._labels(args, contract.ROLE_NETWORK),
            opts=child,
        )

        api_image = self._image(f"{name}-api-image", args, contract.API_CONTEXT, "api")
        proxy_image = self._image(f"{name}-proxy-image", args, contract.PROXY_CONTEXT, "proxy")

        # Only peers on the stack's own network may set X-Forwarded-* for gunicorn.
        subnet = network.ipam_configs.apply(lambda configs: configs[0].subnet or "127.0.0.1")
        api_containers = [
            docker.Container(
                f"{name}-api-{index}",
                name=f"{args.name_prefix}-api-{index}",
                # By digest: a rebuilt image replaces the containers, an unchanged one doesn't.
                image=api_image.repo_digest,
                envs=[
                    f"PORT={contract.API_PORT}",
                    f"WEB_CONCURRENCY={settings.api_workers}",
                    f"GUNICORN_THREADS={settings.api_threads}",
                    subnet.apply(lambda cidr: f"FORWARDED_ALLOW_IPS={cidr}"),
                ],
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgs(
                        name=network.name, aliases=[contract.API_ALIAS]
                    )
                ],
                memory=settings.api_memory_mb,
                user=contract.API_USER,
                **self._hardening(args, contract.ROLE_API, settings),
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            for index in range(1, settings.api_replicas + 1)
        ]

        proxy_envs = [
            f"API_UPSTREAM={contract.API_ALIAS}:{contract.API_PORT}",
            f"RATE_LIMIT_RPS={settings.rate_limit_per_second}",
        ]
        proxy = docker.Container(
            f"{name}-proxy",
            name=f"{args.name_prefix}-proxy",
            image=proxy_image.repo_digest,
            envs=proxy_envs,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name)],
            ports=[
                docker.ContainerPortArgs(
                    internal=contract.PROXY_CONTAINER_PORT,
                    external=settings.proxy_port,
                    ip=settings.proxy_bind_address,
                    protocol="tcp",
                )
            ],
            memory=settings.proxy_memory_mb,
            user=contract.PROXY_USER,
            **self._hardening(args, contract.ROLE_PROXY, settings),
            # The API containers wait until healthy, so the proxy starts with a healthy API.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=api_containers, delete_before_replace=True
            ),
        )

        self.url = pulumi.Output.from_input(
            proxy_url(settings.proxy_bind_address, settings.proxy_port)
        )
        self.api_image = api_image.repo_digest
        self.proxy_image = proxy_image.repo_digest
        self.network_name = network.name
        self.api_container_names = pulumi.Output.all(*[c.name for c in api_containers])
        self.proxy_container_name = proxy.name
        self.register_outputs(
            {
                "url": self.url,
                "api_image": self.api_image,
                "proxy_image": self.proxy_image,
                "network_name": self.network_name,
                "api_container_names": self.api_container_names,
                "proxy_container_name": self.proxy_container_name,
            }
        )

    @staticmethod
    def _labels(args: RestApiStackArgs, role: str) -> list[dict[str, str]]:
        labels = {**args.labels, contract.LABEL_ROLE: role}
        return [{"label": k, "value": v} for k, v in sorted(labels.items())]

    def _image(
        self, resource_name: str, args: RestApiStackArgs, context: str, role: str
    ) -> docker.Image:
        base_image = {
            "api": args.settings.api_base_image,
            "proxy": args.settings.proxy_base_image,
        }[role]
        return docker.Image(
            resource_name,
            image_name=f"{args.name_prefix}-{role}:{args.image_tag}",
            build=docker.DockerBuildArgs(
                context=build_context(context),
                dockerfile=build_context(f"{context}/Dockerfile"),
                platform=args.settings.image_platform,
                # Unset: the Dockerfile's own default base image applies.
                args={"BASE_IMAGE": base_image} if base_image else None,
            ),
            # Local images only: the containers run on the engine that built them.
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _hardening(args: RestApiStackArgs, role: str, settings: Settings) -> dict[str, object]:
        """Settings every container of the stack gets: least privilege, bounded resources."""
        return {
            "labels": RestApiStack._labels(args, role),
            "read_only": True,
            "tmpfs": {"/tmp": TMPFS_OPTIONS},
            "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            "security_opts": ["no-new-privileges:true"],
            # pulumi-docker has no pids limit; RLIMIT_NPROC bounds the processes and threads
            # of the container's user instead.
            "ulimits": [
                docker.ContainerUlimitArgs(
                    name="nproc", soft=settings.process_limit, hard=settings.process_limit
                )
            ],
            "restart": "unless-stopped",
            "log_driver": "json-file",
            "log_opts": LOG_OPTIONS,
            # Wait for the image's HEALTHCHECK to report healthy before going on.
            "wait": True,
            "wait_timeout": 90,
        }
