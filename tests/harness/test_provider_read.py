"""The harness's model of pulumi-docker's Read and of the plan Pulumi makes from it: a change
is what reads back differently from the declaration, as the provider compares it."""

from typing import Any

import pytest

from engine_harness.provider_read import changes, read_back
from engine_harness.provider_rules import CONTAINER

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
# `docker inspect` of a container created with what DECLARED says (Docker 20.10's words).
INSPECT: dict[str, Any] = {
    "Name": "/api-1",
    "Image": "sha256:abc",
    "Config": {"Image": "sha256:abc", "User": "10001:10001"},
    "HostConfig": {
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": "size=16m"},
        "CapAdd": None,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges=true"],
        "Memory": 256 * MIB,
        "MemorySwap": 512 * MIB,  # Docker's 2 x memory when none is declared
        "RestartPolicy": {"Name": "unless-stopped"},
        "LogConfig": {"Type": "local", "Config": {"max-size": "5m"}},  # the host's default
        "Ulimits": [{"Name": "nofile", "Soft": 4096, "Hard": 8192}],  # the host's default
    },
    "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}},
}
# As the mock runtime hands them over: numbers as floats.
DECLARED: dict[str, Any] = {
    "image": "sha256:abc",
    "user": "10001:10001",
    "readOnly": True,
    "tmpfs": {"/tmp": "size=16m"},
    "capabilities": {"drops": ["ALL"]},
    "securityOpts": ["no-new-privileges=true"],
    "memory": 256.0,
    "restart": "unless-stopped",
    "logDriver": "local",
    "envs": ["B=2", "A=1"],
    "ports": [{"internal": 8080.0, "external": 8080.0, "ip": "::1", "protocol": "tcp"}],
}


def test_what_reads_back_as_declared_plans_nothing_but_the_undeclared_swap() -> None:
    outputs = read_back(CONTAINER, DECLARED, INSPECT)
    assert changes(CONTAINER, outputs, DECLARED) == {"memorySwap"}
    assert changes(CONTAINER, outputs, DECLARED, ignore=("memorySwap",)) == set()


def test_settings_read_only_when_declared_carry_the_hosts_defaults() -> None:
    declared = DECLARED | {"logOpts": {"max-file": "3"}, "ulimits": []}
    outputs = read_back(CONTAINER, declared, INSPECT)
    assert outputs["logOpts"] == {"max-size": "5m"}
    assert {"logOpts", "ulimits"} <= changes(CONTAINER, outputs, declared)


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        ({"envs": ["A=1", "B=2"]}, set()),  # a set: order is no change
        ({"memory": 512.0}, {"memory"}),
        (
            {
                "ports": [
                    {"internal": 8080, "external": 8080, "ip": "0:0:0:0:0:0:0:1", "protocol": "tcp"}
                ]
            },
            {"ports"},
        ),
        ({"tmpfs": None}, {"tmpfs"}),  # no longer declared: a change too
    ],
    ids=["reordered-set", "memory", "ipv6-longhand", "removed"],
)
def test_a_change_is_what_differs_from_the_read_back(
    edit: dict[str, Any], changed: set[str]
) -> None:
    outputs = read_back(CONTAINER, DECLARED, INSPECT)
    declared = {k: v for k, v in (DECLARED | edit).items() if v is not None}
    assert changes(CONTAINER, outputs, declared, ignore=("memorySwap",)) == changed
