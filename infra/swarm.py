"""The stack on a Docker Swarm (orchestrator swarm): its manager is pulumi-docker's `docker:host`.

What it creates, and how a `pulumi up` rolls a change out:

- An overlay network on `networkSubnet` (attachable: for `docker run --network` debugging), with
  IPsec between nodes where `overlayEncrypted` asks for it.
- The API: a replicated service of `apiReplicas` tasks with `endpoint_mode: dnsrr`. The proxy
  finds the tasks by the network alias `api`, as it finds containers on one engine: Docker's
  DNS answers with the address of every running, healthy task, and nginx asks again every
  second. No virtual IP, so no IPVS is needed (a kernel without it can't run the routing mesh).
  Swarm spreads the tasks over the nodes. A new release replaces one task at a time,
  start-first: the new task must pass the image's health check before the old one is stopped
  (gracefully). A release whose tasks fail makes Swarm roll back by itself: the old release keeps
  serving throughout, and `pulumi up` fails saying so, with the tasks' errors (a rollout gate,
  health_gate.py: pulumi-docker's own wait returns before a rolling update is over).
- The proxy: a replicated service of `proxyReplicas` tasks, one per node at most, on the nodes
  `proxyConstraints` selects. It publishes `proxyPort` (and `httpRedirectPort`) in host mode on
  each node it runs on: clients (or a load balancer) reach those nodes' addresses directly,
  with no routing mesh. Replicated rather than global, because pulumi-docker waits for a
  replicated service to converge and not for a global one. A node's old proxy task must free
  the port before its new one binds it: a proxy change is stop-first, a short gap per node.
- With HTTPS, the certificate and key as Docker secrets, mounted in the proxy's tasks under
  /run/secrets (a tmpfs, the key readable by the proxy's user alone), never in the
  environment. Docker secrets can't change: a new certificate is a new secret (auto-named),
  the proxy moves to it, and the old one is removed at the end of the deployment.

Hardening, as on one engine wherever Swarm can express it: non-root user, read-only root
filesystem with a tmpfs /tmp, every capability dropped, memory limits (and reservations, so the
scheduler places tasks only where they fit), the `local` log driver, graceful stops. What Swarm
services can't express on this provider (pulumi-docker 5, terraform-provider-docker 4.5) and
Docker before 25: no-new-privileges, which the images make up for by shipping no setuid or setgid
program; the tmpfs's noexec/nosuid/nodev options; and a bind address for published ports (a
host-mode port listens on every interface of its node: limit it with the nodes' firewall).
"""

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

import contract
from health_gate import ServiceRolledOut
from instance_specs import (
    API_STOP_GRACE_SECONDS,
    LOG_DRIVER,
    PROXY_STOP_GRACE_SECONDS,
    PROXY_SYSCTLS,
    TMPFS_SIZE_BYTES,
    ProxyTls,
    RestApiStackArgs,
    api_environment,
    gateway,
    labels,
)

MIB = 1024 * 1024
# How long `pulumi up` waits for a service's tasks to run (and pass their health checks), and
# for a rollout to end.
CONVERGE_TIMEOUT_SECONDS = 300
CONVERGE_TIMEOUT = f"{CONVERGE_TIMEOUT_SECONDS}s"
# After a task is replaced, how long Swarm watches it before the next: a task that fails its
# health checks within this time fails the update (and rolls it back).
UPDATE_MONITOR = "10s"
# Where the proxy's tasks find the TLS material (Docker mounts secrets under /run/secrets).
TLS_CERTIFICATE_FILE = "tls-certificate.pem"
TLS_PRIVATE_KEY_FILE = "tls-private-key.pem"
# Readable by the proxy's user alone (0400).
SECRET_FILE_MODE = 0o400


@dataclass(frozen=True)
class SwarmArgs:
    # The component's name, the prefix of every logical name.
    name: str
    stack: RestApiStackArgs
    # The images by digest (or, without a registry, by the building engine's id).
    api_image: pulumi.Input[str]
    proxy_image: pulumi.Input[str]
    proxy_environment: dict[str, str]
    tls: ProxyTls | None


@dataclass(frozen=True)
class SwarmServices:
    network_name: pulumi.Output[str]
    api_service_name: pulumi.Output[str]
    proxy_service_name: pulumi.Output[str]


def deploy(args: SwarmArgs, parent: pulumi.Resource) -> SwarmServices:
    """The overlay network, the API and proxy services and the TLS secrets."""
    settings = args.stack.settings
    child = pulumi.ResourceOptions(parent=parent)
    network = docker.Network(
        f"{args.name}-network",
        name=f"{args.stack.name_prefix}-net",
        driver="overlay",
        attachable=True,
        options={"encrypted": "true"} if settings.overlay_encrypted else None,
        ipam_configs=[
            docker.NetworkIpamConfigArgs(
                subnet=settings.network_subnet, gateway=gateway(settings.network_subnet)
            )
        ],
        labels=[
            docker.NetworkLabelArgs(label=key, value=value)
            for key, value in labels(args.stack.labels, contract.ROLE_NETWORK).items()
        ],
        # The provider reads back the engine's whole options map, the overlay's own VXLAN id
        # included: a declared map would differ on every `up`, and options force a
        # replacement. (So a change of overlayEncrypted needs the network made anew:
        # `pulumi destroy`, then `up`.)
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["options"]),
    )
    api = _service(
        args,
        contract.ROLE_API,
        _container_spec(
            args,
            contract.ROLE_API,
            image=args.api_image,
            env=api_environment(settings),
            stop_grace_seconds=API_STOP_GRACE_SECONDS,
        ),
        network=docker.ServiceTaskSpecNetworksAdvancedArgs(
            id=network.id, aliases=[contract.API_ALIAS]
        ),
        memory_mb=settings.api_memory_mb,
        replicas=settings.api_replicas,
        # The new task beside the old one until it is healthy.
        order="start-first",
        endpoint=docker.ServiceEndpointSpecArgs(mode="dnsrr"),
        opts=child,
    )
    api_rolled_out = _rolled_out(api, args.api_image, parent)

    environment = dict(args.proxy_environment)
    secrets = []
    if args.tls is not None:
        secrets = [
            _secret(args, "tls-certificate", args.tls.certificate, TLS_CERTIFICATE_FILE, parent),
            _secret(args, "tls-private-key", args.tls.private_key, TLS_PRIVATE_KEY_FILE, parent),
        ]
        environment["TLS_CERTIFICATE_FILE"] = f"/run/secrets/{TLS_CERTIFICATE_FILE}"
        environment["TLS_PRIVATE_KEY_FILE"] = f"/run/secrets/{TLS_PRIVATE_KEY_FILE}"
    served = contract.PROXY_HTTPS_PORT if args.tls is not None else contract.PROXY_HTTP_PORT
    ports = [_host_port(served, settings.proxy_port)]
    if settings.http_redirect_port:
        ports.append(_host_port(contract.PROXY_HTTP_PORT, settings.http_redirect_port))
    proxy = _service(
        args,
        contract.ROLE_PROXY,
        _container_spec(
            args,
            contract.ROLE_PROXY,
            image=args.proxy_image,
            env=environment,
            stop_grace_seconds=PROXY_STOP_GRACE_SECONDS,
            # None rather than empty: the provider reads secrets back only when there are some.
            secrets=secrets or None,
            sysctl=PROXY_SYSCTLS,
        ),
        network=docker.ServiceTaskSpecNetworksAdvancedArgs(id=network.id),
        memory_mb=settings.proxy_memory_mb,
        replicas=settings.proxy_replicas,
        # The old task must free the node's ports before the new one binds them.
        order="stop-first",
        endpoint=docker.ServiceEndpointSpecArgs(mode="dnsrr", ports=ports),
        placement=docker.ServiceTaskSpecPlacementArgs(
            # One per node: each binds the node's published ports.
            max_replicas=1,
            constraints=list(settings.proxy_constraints or ()) or None,
        ),
        # After the API's rollout, so that the proxy starts with a healthy API.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[api_rolled_out]),
    )
    _rolled_out(proxy, args.proxy_image, parent)
    return SwarmServices(network.name, api.name, proxy.name)


def _rolled_out(
    service: docker.Service, image: pulumi.Input[str], parent: pulumi.Resource
) -> ServiceRolledOut:
    """The deploy goes on once Swarm has rolled the service out, or fails saying why; run again
    whenever the service's tasks or their number change (a rollout, or a scaling)."""
    return ServiceRolledOut(
        f"{service.pulumi_resource_name}-rolled-out",
        service.id,
        image,
        pulumi.Output.json_dumps({"tasks": service.task_spec, "mode": service.mode}),
        CONVERGE_TIMEOUT_SECONDS,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[service]),
    )


def _service(
    args: SwarmArgs,
    role: str,
    container: docker.ServiceTaskSpecContainerSpecArgs,
    *,
    network: docker.ServiceTaskSpecNetworksAdvancedArgs,
    memory_mb: int,
    replicas: int,
    order: str,
    endpoint: docker.ServiceEndpointSpecArgs,
    opts: pulumi.ResourceOptions,
    placement: docker.ServiceTaskSpecPlacementArgs | None = None,
) -> docker.Service:
    """A replicated service with what every task of the stack gets: its memory limit, also
    reserved (the scheduler puts a task only where it fits), a restart policy, bounded logs,
    rolling updates one task at a time (`order`) with rollback, and a wait for its tasks."""
    memory = memory_mb * MIB
    return docker.Service(
        f"{args.name}-{role}",
        name=f"{args.stack.name_prefix}-{role}",
        labels=[
            docker.ServiceLabelArgs(label=key, value=value)
            for key, value in labels(args.stack.labels, role).items()
        ],
        task_spec=docker.ServiceTaskSpecArgs(
            container_spec=container,
            networks_advanceds=[network],
            resources=docker.ServiceTaskSpecResourcesArgs(
                limits=docker.ServiceTaskSpecResourcesLimitsArgs(memory_bytes=memory),
                reservation=docker.ServiceTaskSpecResourcesReservationArgs(memory_bytes=memory),
            ),
            # A task that exits is replaced, after a pause that keeps a crashing one from looping.
            restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition="any", delay="5s"),
            placement=placement,
            log_driver=docker.ServiceTaskSpecLogDriverArgs(name=LOG_DRIVER),
        ),
        mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=replicas)),
        update_config=_rollout(docker.ServiceUpdateConfigArgs, order, on_failure="rollback"),
        rollback_config=_rollout(docker.ServiceRollbackConfigArgs, order, on_failure="pause"),
        endpoint_spec=endpoint,
        converge_config=docker.ServiceConvergeConfigArgs(timeout=CONVERGE_TIMEOUT),
        opts=opts,
    )


def _container_spec(
    args: SwarmArgs,
    role: str,
    *,
    image: pulumi.Input[str],
    env: dict[str, str],
    stop_grace_seconds: int,
    secrets: list[docker.ServiceTaskSpecContainerSpecSecretArgs] | None = None,
    sysctl: dict[str, str] | None = None,
) -> docker.ServiceTaskSpecContainerSpecArgs:
    """A task's container, with the least privilege Swarm can give it (see the module's
    docstring); the health check is the image's."""
    return docker.ServiceTaskSpecContainerSpecArgs(
        image=image,
        env=env,
        secrets=secrets,
        sysctl=sysctl,
        user=args.stack.users.of(role),
        read_only=True,
        cap_drops=["ALL"],
        mounts=[
            docker.ServiceTaskSpecContainerSpecMountArgs(
                target="/tmp",  # noqa: S108 (a private tmpfs mount point)
                type="tmpfs",
                tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                    size_bytes=TMPFS_SIZE_BYTES
                ),
            )
        ],
        labels=[
            docker.ServiceTaskSpecContainerSpecLabelArgs(label=key, value=value)
            for key, value in labels(args.stack.labels, role).items()
        ],
        # Removal stops a task with its STOPSIGNAL, then SIGKILL after this long.
        stop_grace_period=f"{stop_grace_seconds}s",
    )


def _rollout(
    kind: type[docker.ServiceUpdateConfigArgs] | type[docker.ServiceRollbackConfigArgs],
    order: str,
    *,
    on_failure: str,
) -> Any:
    """A release rolls out one task at a time, each watched for UPDATE_MONITOR; a failed task
    fails the update, which Swarm then rolls back (and a failed rollback pauses, for a person
    to look)."""
    return kind(
        parallelism=1,
        order=order,
        failure_action=on_failure,
        monitor=UPDATE_MONITOR,
        max_failure_ratio="0.0",
    )


def _host_port(target: int, published: int) -> docker.ServiceEndpointSpecPortArgs:
    """A port published on each node that runs a proxy task, without the routing mesh."""
    return docker.ServiceEndpointSpecPortArgs(
        target_port=target, published_port=published, publish_mode="host", protocol="tcp"
    )


def _secret(
    args: SwarmArgs,
    what: str,
    pem: pulumi.Output[str],
    file_name: str,
    parent: pulumi.Resource,
) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
    """A Docker secret with `pem`, as the proxy's tasks mount it. Auto-named (no fixed name):
    a new value is a new secret, created before the old one is removed."""
    secret = docker.Secret(
        f"{args.name}-{what}",
        # (pulumi-docker keeps `data` a secret in the state.)
        data=pem.apply(lambda text: base64.b64encode(text.encode()).decode()),
        labels=[
            docker.SecretLabelArgs(label=key, value=value)
            for key, value in labels(args.stack.labels, contract.ROLE_PROXY).items()
        ],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    uid, gid = args.stack.users.proxy.split(":")
    return docker.ServiceTaskSpecContainerSpecSecretArgs(
        secret_id=secret.id,
        secret_name=secret.name,
        file_name=file_name,
        file_uid=uid,
        file_gid=gid,
        file_mode=SECRET_FILE_MODE,
    )
