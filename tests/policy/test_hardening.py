"""The policy pack over what the program declares under the mock runtime: the program complies
(dev config and a non-default one), and a copy of its resources with one hardening setting
removed is caught by that setting's policy alone, with a message naming the container and
what to change."""

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

import hardening
from engine_harness.docker_mocks import Options
from engine_harness.program import stack_config
from mock_preview import Declared, check, declare
from tests.engine_stacks import PROJECT, full_config

pytestmark = pytest.mark.unit

NON_DEFAULT = {
    "proxyPort": "9443",
    "proxyBindAddress": "0:0:0:0:0:0:0:1",
    "apiReplicas": "3",
    "apiMemoryMb": "512",
    "proxyMemoryMb": "64",
    "networkSubnet": "10.9.8.0/24",
    "apiBaseImage": "registry:5000/team/python:3.14",
    "imagePlatform": "linux/arm64",
}


def declared_with(config: dict[str, str]) -> list[Declared]:
    return declare("unit", config, PROJECT)


def test_the_dev_stack_complies() -> None:
    declared = declared_with(stack_config("dev"))
    assert len([d for d in declared if d.typ == hardening.CONTAINER]) == 3
    assert check(declared) == []


def test_a_non_default_stack_complies() -> None:
    declared = declared_with(full_config(NON_DEFAULT))
    assert len([d for d in declared if d.typ == hardening.CONTAINER]) == 4
    assert check(declared) == []


Mutation = Callable[[dict[str, Any]], None]


def without(key: str) -> Mutation:
    return lambda inputs: inputs.pop(key)


def setting(key: str, value: object) -> Mutation:
    return lambda inputs: inputs.__setitem__(key, value)


def on_port(key: str, value: object | None) -> Mutation:
    def mutate(inputs: dict[str, Any]) -> None:
        (port,) = inputs["ports"]
        port.pop(key) if value is None else port.__setitem__(key, value)

    return mutate


# (policy, container, the change to its declaration, what the message must say)
DROPPED = [
    ("non-root-user", "api-1", without("user"), 'user="10001:10001"'),
    ("non-root-user", "proxy", setting("user", "0:0"), "runs as user '0:0'"),
    ("non-root-user", "proxy", setting("user", "root"), "runs as user 'root'"),
    ("read-only-root", "api-1", without("readOnly"), "set read_only=True"),
    ("read-only-root", "proxy", setting("readOnly", False), "set read_only=True"),
    ("drop-all-capabilities", "api-1", without("capabilities"), 'drops=["ALL"]'),
    (
        "drop-all-capabilities",
        "proxy",
        setting("capabilities", {"drops": ["ALL"], "adds": ["NET_ADMIN"]}),
        "adds capabilities ['NET_ADMIN']",
    ),
    ("no-new-privileges", "api-1", without("securityOpts"), '"no-new-privileges=true"'),
    ("memory-limit", "proxy", without("memory"), "set memory"),
    ("not-privileged", "api-1", setting("privileged", True), "remove privileged=True"),
    ("no-host-namespaces", "api-1", setting("networkMode", "host"), 'network_mode="host"'),
    ("no-host-namespaces", "proxy", setting("pidMode", "host"), 'pid_mode="host"'),
    ("no-host-namespaces", "api-1", setting("ipcMode", "host"), 'ipc_mode="host"'),
    (
        "no-host-mounts",
        "api-1",
        setting("mounts", [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s"}]),
        "mounts the host's /var/run/docker.sock",
    ),
    (
        "no-host-mounts",
        "proxy",
        setting("volumes", [{"hostPath": "/", "containerPath": "/host"}]),
        "mounts the host's /:",
    ),
    (
        "no-host-mounts",
        "proxy",
        setting("mounts", [{"type": "bind", "source": "/run", "target": "/r"}]),
        "mounts the host's /run",
    ),
    (
        "ports-on-bind-address",
        "proxy",
        on_port("ip", None),
        "publishes port 8080 on all interfaces (no ip given)",
    ),
    ("ports-on-bind-address", "proxy", on_port("ip", "0.0.0.0"), "on 0.0.0.0, not on"),
    (
        "ports-on-bind-address",
        "proxy",
        setting("publishAllPorts", True),
        "remove publish_all_ports",
    ),
    ("health-check", "api-1", setting("healthcheck", {"tests": ["NONE"]}), "remove healthcheck"),
    ("image-by-digest", "proxy", setting("image", "nginx:1.30"), ".repo_digest"),
]


@pytest.fixture(scope="module")
def dev_declared() -> list[Declared]:
    return declared_with(stack_config("dev"))


@pytest.fixture
def dev(dev_declared: list[Declared]) -> list[Declared]:
    """What the dev stack declares, with its config in force (the ports policy reads it)."""
    pulumi.runtime.set_all_config(stack_config("dev"))
    return dev_declared


def changed(declared: list[Declared], name: str, mutate: Mutation) -> list[Declared]:
    """A copy with one resource's declaration changed (inputs, and the outputs the mocks echo)."""
    result = []
    for d in declared:
        inputs, outputs = copy.deepcopy(d.inputs), copy.deepcopy(d.outputs)
        if d.name == name:
            mutate(inputs)
            mutate(outputs)
        result.append(dataclasses.replace(d, inputs=inputs, outputs=outputs))
    return result


@pytest.mark.parametrize(
    ("policy", "container", "mutate", "says"),
    DROPPED,
    ids=[f"{row[0]}-{row[1]}-{row[3][:24]}" for row in DROPPED],
)
def test_a_dropped_setting_is_named_by_its_policy(
    dev: list[Declared], policy: str, container: str, mutate: Mutation, says: str
) -> None:
    (target,) = [d for d in dev if d.name == f"{PROJECT}-unit-{container}"]
    (violation,) = check(changed(dev, target.name, mutate))
    assert violation.policy == policy
    assert violation.urn == target.options.urn
    assert violation.message.startswith(f"container {target.name} "), violation.message
    assert says in violation.message, violation.message


def test_every_container_policy_is_exercised() -> None:
    rules = {rule.name for rule in hardening.CONTAINER_RULES} | {"health-check"}
    assert rules == {row[0] for row in DROPPED}
    names = [policy.name for policy in hardening.POLICIES]
    assert len(names) == len(set(names))


def test_an_image_without_a_health_check_is_named(dev: list[Declared], tmp_path: Path) -> None:
    """The program's health checks are its images' (HEALTHCHECK in their Dockerfiles): one
    built from a Dockerfile without one fails every container that runs it."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.14\nHEALTHCHECK CMD true\nFROM python:3.14\nUSER 1\n")
    (image,) = [d for d in dev if d.name.endswith("-proxy-image")]

    def rebuild(inputs: dict[str, Any]) -> None:
        inputs["build"]["dockerfile"] = str(dockerfile)

    violations = check(changed(dev, image.name, rebuild))
    assert {v.policy for v in violations} == {"health-check"}
    (violation,) = violations
    assert violation.message == (
        f"container {PROJECT}-unit-proxy has no health check:"
        f" add a HEALTHCHECK to the last stage of {dockerfile}"
    )


def test_a_container_of_an_image_not_built_here_must_declare_its_health_check(
    dev: list[Declared],
) -> None:
    (proxy,) = [d for d in dev if d.name.endswith("-proxy")]
    options = dataclasses.replace(proxy.options, property_dependencies={})
    unlinked = [dataclasses.replace(d, options=options) if d is proxy else d for d in dev]
    (violation,) = check(unlinked)
    assert violation.policy == "health-check"
    assert "healthcheck=docker.ContainerHealthcheckArgs" in violation.message


def test_a_swarm_service_is_refused_until_the_pack_checks_it(dev: list[Declared]) -> None:
    service = Declared(hardening.SERVICE, "svc", {}, {}, Options(urn="urn:pulumi:unit::p::svc"))
    (violation,) = check([*dev, service])
    assert violation.policy == "no-unchecked-swarm-services"
    assert violation.message.startswith("service svc: ")


@pytest.mark.parametrize(
    ("dockerfile", "healthcheck"),
    [
        ('FROM a\nHEALTHCHECK --interval=5s \\\n    CMD ["x"]\n', '--interval=5s      CMD ["x"]'),
        ("FROM a\nHEALTHCHECK CMD x\nFROM b\n", None),
        ("FROM a\nhealthcheck none\n", "none"),
        ("FROM a\n# HEALTHCHECK CMD x\n", None),
    ],
)
def test_the_last_stages_health_check_is_read(dockerfile: str, healthcheck: str | None) -> None:
    assert hardening.final_healthcheck(dockerfile) == healthcheck


def test_an_images_dockerfile_is_found_from_its_inputs_and_from_its_outputs() -> None:
    """Preview and the mock runtime see the inputs; after a deploy, pulumi-docker's outputs
    give the Dockerfile relative to the context."""
    expected = hardening.PROGRAM_DIR / "../service/Dockerfile"
    inputs = {"build": {"context": "../service", "dockerfile": "../service/Dockerfile"}}
    assert hardening.dockerfile_of(inputs) == expected
    assert hardening.dockerfile_of({"build": {"context": "../service"}}) == expected
    assert hardening.dockerfile_of({"context": "../service", "dockerfile": "Dockerfile"}) == (
        expected
    )
