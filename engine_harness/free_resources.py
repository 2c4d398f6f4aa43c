"""What a stack deployed next to others (tests, bench) needs free: a host port and a subnet.

Each stack publishes its own `proxyPort` and has its own fixed subnet (`networkSubnet`), so two
stacks on one engine need different ones; Docker refuses a subnet that overlaps another
network's.
"""

import ipaddress
import socket
from collections.abc import Iterator

import docker

# Where the candidates come from: /24s of a private block that Docker's default address pools
# reach only after many networks, and that the dev stack's default (172.28.10.0/24) is not in.
CANDIDATES = ipaddress.ip_network("172.29.0.0/16")


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; free again once the socket closes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def used_subnets(client: docker.DockerClient) -> Iterator[ipaddress.IPv4Network]:
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if not config.get("Subnet"):
                continue
            subnet = ipaddress.ip_network(config["Subnet"], strict=False)
            if isinstance(subnet, ipaddress.IPv4Network):
                yield subnet


def free_subnet(client: docker.DockerClient) -> str:
    """The first /24 of CANDIDATES that overlaps no network on the engine."""
    used = list(used_subnets(client))
    for candidate in CANDIDATES.subnets(new_prefix=24):
        if not any(candidate.overlaps(subnet) for subnet in used):
            return str(candidate)
    raise RuntimeError(f"every /24 of {CANDIDATES} is used by a Docker network")
