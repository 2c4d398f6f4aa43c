"""The policy pack over what the program declares under the mock runtime: the program complies
(the dev and swarm stacks' config, and non-default ones), and a copy of its resources with one
hardening setting removed is caught by that setting's policy alone, with a message naming the
container or service and what to change."""

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

import hardening
from engine_harness.program import stack_config
from instance_specs import stack_users
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


def test_the_swarm_stack_complies() -> None:
    declared = declared_with(stack_config("swarm"))
    assert [d.typ for d in declared if d.typ in hardening.KINDS] == [hardening.SERVICE] * 2
    assert check(declared) == []


@pytest.mark.parametrize(
    "config",
    [
        {
            "imageRegistry": "registry.example.com:5000/team",
            "proxyReplicas": "3",
            "proxyConstraints": "node.labels.edge==true,node.role!=manager",
            "overlayEncrypted": "true",
            "httpRedirectPort": "8081",
            "publicHost": "api.example.com",
        },
        {"tlsMode": "off", "apiReplicas": "1"},
    ],
    ids=["registry-redirect", "plain-http"],
)
def test_a_non_default_swarm_stack_complies(config: dict[str, str]) -> None:
    declared = declared_with(stack_config("swarm") | full_config(config))
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


def in_spec(mutate: Mutation) -> Mutation:
    """The change, to a service's container spec."""
    return lambda inputs: mutate(inputs["taskSpec"]["containerSpec"])


def on_service_ports(key: str, value: object | None) -> Mutation:
    def mutate(inputs: dict[str, Any]) -> None:
        for port in inputs["endpointSpec"]["ports"]:
            port.pop(key) if value is None else port.__setitem__(key, value)

    return mutate


def with_api_health_path(path: str) -> Mutation:
    """A container's API_HEALTH_PATH set to `path` (in its NAME=value lines)."""

    def mutate(inputs: dict[str, Any]) -> None:
        envs = [line for line in inputs["envs"] if not line.startswith("API_HEALTH_PATH=")]
        inputs["envs"] = [*envs, f"API_HEALTH_PATH={path}"]

    return mutate


def without_memory_limit(inputs: dict[str, Any]) -> None:
    inputs["taskSpec"]["resources"].pop("limits")


# The uids of the stack the tests declare ("unit"), by role.
UNIT_USERS = stack_users(f"{PROJECT}-unit")

KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"

# (policy, container, the change to its declaration, what the message must say)
DROPPED = [
    ("non-root-user", "api-1", without("user"), f"its stack's: user='{UNIT_USERS.api}'"),
    ("non-root-user", "api-1", setting("user", "10001:10001"), "not its stack's uid"),
    ("non-root-user", "proxy", setting("user", "10001:10001"), "not its stack's uid"),
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
    ("api-health-endpoint", "api-1", with_api_health_path("/"), "asks its health on '/'"),
]

# The same for the swarm stack's services (health-check: the image's, or their own).
SERVICE_DROPPED = [
    ("non-root-user", "api", in_spec(without("user")), f"its stack's: user='{UNIT_USERS.api}'"),
    ("non-root-user", "api", in_spec(setting("user", "10001:10001")), "not its stack's uid"),
    ("non-root-user", "proxy", in_spec(setting("user", "0")), "runs as user '0'"),
    ("read-only-root", "api", in_spec(without("readOnly")), "set read_only=True"),
    ("read-only-root", "proxy", in_spec(setting("readOnly", False)), "set read_only=True"),
    ("drop-all-capabilities", "proxy", in_spec(without("capDrops")), 'cap_drops=["ALL"]'),
    (
        "drop-all-capabilities",
        "api",
        in_spec(setting("capAdds", ["NET_RAW"])),
        "adds capabilities ['NET_RAW']: remove cap_adds",
    ),
    ("memory-limit", "api", without_memory_limit, "set task_spec.resources.limits.memory_bytes"),
    (
        "no-host-mounts",
        "proxy",
        in_spec(
            setting("mounts", [{"type": "bind", "source": "/run/docker.sock", "target": "/s"}])
        ),
        "mounts the host's /run/docker.sock",
    ),
    (
        "no-host-mounts",
        "api",
        in_spec(setting("mounts", [{"type": "bind", "source": "/", "target": "/host"}])),
        "mounts the host's /:",
    ),
    (
        "ports-in-host-mode",
        "proxy",
        on_service_ports("publishMode", "ingress"),
        "publishes port 8444 through the routing mesh",
    ),
    ("ports-in-host-mode", "proxy", on_service_ports("publishMode", None), 'publish_mode="host"'),
    (
        "image-by-digest",
        "api",
        in_spec(setting("image", "registry:5000/api:swarm")),
        ".repo_digest",
    ),
    (
        "keys-as-secrets",
        "proxy",
        in_spec(lambda spec: spec["env"].__setitem__("TLS_PRIVATE_KEY", KEY)),
        "private key in its environment (TLS_PRIVATE_KEY): make it a docker.Secret",
    ),
    (
        "health-check",
        "api",
        in_spec(setting("healthcheck", {"tests": ["NONE"]})),
        "disables its health check (['NONE'])",
    ),
    (
        "api-health-endpoint",
        "api",
        in_spec(lambda spec: spec["env"].__setitem__("API_HEALTH_PATH", "/")),
        "set API_HEALTH_PATH=/healthz",
    ),
]


@pytest.fixture(scope="module")
def declared_by_stack() -> dict[str, list[Declared]]:
    """What the dev stack (containers) and the swarm stack (services) declare."""
    return {stack: declared_with(stack_config(stack)) for stack in ("dev", "swarm")}


@pytest.fixture
def stacks(declared_by_stack: dict[str, list[Declared]]) -> Callable[[str], list[Declared]]:
    """What a stack declares, with its config in force (the ports policy reads it)."""

    def declared(stack: str) -> list[Declared]:
        pulumi.runtime.set_all_config(stack_config(stack))
        return declared_by_stack[stack]

    return declared


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


DROPPED_BY_STACK = [("dev", *row) for row in DROPPED] + [("swarm", *row) for row in SERVICE_DROPPED]


@pytest.mark.parametrize(
    ("stack", "policy", "resource", "mutate", "says"),
    DROPPED_BY_STACK,
    ids=[f"{row[0]}-{row[1]}-{row[2]}-{row[4][:24]}" for row in DROPPED_BY_STACK],
)
def test_a_dropped_setting_is_named_by_its_policy(
    stacks: Callable[[str], list[Declared]],
    stack: str,
    policy: str,
    resource: str,
    mutate: Mutation,
    says: str,
) -> None:
    declared = stacks(stack)
    (target,) = [d for d in declared if d.name == f"{PROJECT}-unit-{resource}"]
    (violation,) = check(changed(declared, target.name, mutate))
    assert violation.policy == policy
    assert violation.urn == target.options.urn
    kind = hardening.KINDS[target.typ].word
    assert violation.message.startswith(f"{kind} {target.name} "), violation.message
    assert says in violation.message, violation.message


def test_every_policy_is_exercised() -> None:
    """Every rule's check of containers by DROPPED, of services by SERVICE_DROPPED."""
    for rows, checks in (
        (DROPPED, {rule.name for rule in hardening.RULES if rule.container}),
        (SERVICE_DROPPED, {rule.name for rule in hardening.RULES if rule.service}),
    ):
        assert checks | {"health-check"} == {row[0] for row in rows}
    names = [policy.name for policy in hardening.POLICIES]
    assert len(names) == len(set(names))


# What runs the proxy's image: on one engine a container, on a swarm a service (whose rollout
# waits for the image's health check).
RUNS_THE_PROXY = [("dev", "container"), ("swarm", "service")]


@pytest.mark.parametrize(("stack", "kind"), RUNS_THE_PROXY)
def test_an_image_without_a_health_check_is_named(
    stacks: Callable[[str], list[Declared]], tmp_path: Path, stack: str, kind: str
) -> None:
    """The program's health checks are its images' (HEALTHCHECK in their Dockerfiles): one
    built from a Dockerfile without one fails every container or service that runs it."""
    declared = stacks(stack)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.14\nHEALTHCHECK CMD true\nFROM python:3.14\nUSER 1\n")
    (image,) = [d for d in declared if d.name.endswith("-proxy-image")]

    def rebuild(inputs: dict[str, Any]) -> None:
        inputs["build"]["dockerfile"] = str(dockerfile)

    violations = check(changed(declared, image.name, rebuild))
    assert {v.policy for v in violations} == {"health-check"}
    (violation,) = violations
    assert violation.message == (
        f"{kind} {PROJECT}-unit-proxy has no health check:"
        f" add a HEALTHCHECK to the last stage of {dockerfile}"
    )


@pytest.mark.parametrize(
    ("stack", "declare"),
    [
        ("dev", "healthcheck=docker.ContainerHealthcheckArgs(tests=[...])"),
        ("swarm", "healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=[...])"),
    ],
)
def test_what_runs_an_image_not_built_here_must_declare_its_health_check(
    stacks: Callable[[str], list[Declared]], stack: str, declare: str
) -> None:
    declared = stacks(stack)
    (proxy,) = [d for d in declared if d.name.endswith("-proxy")]
    options = dataclasses.replace(proxy.options, property_dependencies={})
    unlinked = [dataclasses.replace(d, options=options) if d is proxy else d for d in declared]
    (violation,) = check(unlinked)
    assert violation.policy == "health-check"
    assert violation.urn == proxy.options.urn
    assert declare in violation.message, violation.message


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
