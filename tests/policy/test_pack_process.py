"""The pack as `pulumi preview --policy-pack policy` runs it: Pulumi's Python language host
starts `python -u -m pulumi.policy <engine> <pack directory>` in the pack's directory with the
stack's name and config in the environment (pulumi sdk/python/cmd/pulumi-language-python
RunPlugin), reads the analyzer's port from its first line of output, and asks it over gRPC.
Here the test asks, with what the program declares under the mock runtime."""

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

import hardening
from engine_harness.program import stack_config
from mock_preview import Declared, declare
from tests.conftest import REPO_ROOT
from tests.engine_stacks import PROJECT

pytestmark = pytest.mark.unit

MANDATORY = analyzer_pb2.EnforcementLevel.MANDATORY


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    environment = os.environ | {
        "PULUMI_PROJECT": PROJECT,
        "PULUMI_STACK": "unit",
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps(stack_config("dev")),
    }
    with subprocess.Popen(
        # No engine to log to: the address is never dialled by this pack.
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:9", str(REPO_ROOT / "policy")],
        cwd=REPO_ROOT / "policy",
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as pack:
        assert pack.stdout is not None and pack.stderr is not None
        port = pack.stdout.readline().strip()
        try:
            if not port.isdigit():
                pack.wait(timeout=10)
                pytest.fail(f"the pack did not start: {port!r} {pack.stderr.read()}")
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield analyzer_pb2_grpc.AnalyzerStub(channel)
        finally:
            pack.kill()  # the pack serves until stopped, as under pulumi


@pytest.fixture(scope="module")
def dev() -> list[Declared]:
    return declare("unit", stack_config("dev"), PROJECT)


@pytest.fixture(scope="module")
def swarm() -> list[Declared]:
    return declare("unit", stack_config("swarm"), PROJECT)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def analyze(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, resource: Declared, **changes: Any
) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource.typ,
        properties=struct(resource.inputs | changes),
        urn=resource.options.urn,
        name=resource.name,
    )
    return list(analyzer.Analyze(request, timeout=30).diagnostics)


def test_the_pack_lists_every_policy_as_mandatory(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert {policy.name for policy in info.policies} == {p.name for p in hardening.POLICIES}
    assert {policy.enforcementLevel for policy in info.policies} == {MANDATORY}


def test_the_program_s_containers_pass_and_a_changed_one_is_stopped(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, dev: list[Declared]
) -> None:
    containers = [d for d in dev if d.typ == hardening.CONTAINER]
    for container in containers:
        assert analyze(analyzer, container) == [], container.name
    proxy = containers[-1]
    (diagnostic,) = analyze(analyzer, proxy, readOnly=False)
    assert diagnostic.policyName == "read-only-root"
    assert diagnostic.enforcementLevel == MANDATORY
    assert f"\ncontainer {proxy.name} has a writable root" in diagnostic.message
    # The published port is checked against the stack's config, which the pack was given.
    (port,) = proxy.inputs["ports"]
    (diagnostic,) = analyze(analyzer, proxy, ports=[port | {"ip": "0.0.0.0"}])
    assert diagnostic.policyName == "ports-on-bind-address"


def test_the_program_s_services_pass_and_a_changed_one_is_stopped(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, swarm: list[Declared]
) -> None:
    services = [d for d in swarm if d.typ == hardening.SERVICE]
    assert len(services) == 2
    for service in services:
        assert analyze(analyzer, service) == [], service.name
    proxy = services[-1]
    endpoint = proxy.inputs["endpointSpec"]
    ports = [port | {"publishMode": "ingress"} for port in endpoint["ports"]]
    (diagnostic,) = analyze(analyzer, proxy, endpointSpec=endpoint | {"ports": ports})
    assert diagnostic.policyName == "ports-in-host-mode"
    assert diagnostic.enforcementLevel == MANDATORY
    assert f"\nservice {proxy.name} publishes port 8444 through the routing mesh" in (
        diagnostic.message
    )


def with_healthcheck(declared: Declared, healthcheck: dict[str, Any] | None) -> dict[str, Any]:
    """A container's or service's outputs with its own health check (None: its image's)."""
    outputs = copy.deepcopy(declared.outputs)
    if healthcheck and declared.typ == hardening.CONTAINER:
        outputs["healthcheck"] = healthcheck
    if healthcheck and declared.typ == hardening.SERVICE:
        outputs["taskSpec"]["containerSpec"]["healthcheck"] = healthcheck
    return outputs


@pytest.mark.parametrize("stack", ["dev", "swarm"])
def test_the_stack_check_follows_each_container_or_service_to_its_image(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, request: pytest.FixtureRequest, stack: str
) -> None:
    declared: list[Declared] = request.getfixturevalue(stack)
    runs_images = [d for d in declared if d.typ in hardening.KINDS]

    def stack_check(healthcheck: dict[str, Any] | None) -> list[Any]:
        resources = [
            analyzer_pb2.AnalyzerResource(
                type=d.typ,
                properties=struct(with_healthcheck(d, healthcheck)),
                urn=d.options.urn,
                name=d.name,
                parent=d.options.parent,
                dependencies=d.options.dependencies,
                propertyDependencies={
                    key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                    for key, urns in d.options.property_dependencies.items()
                },
            )
            for d in declared
            if d.typ in {*hardening.KINDS, hardening.IMAGE}
        ]
        stack_request = analyzer_pb2.AnalyzeStackRequest(resources=resources)
        return list(analyzer.AnalyzeStack(stack_request, timeout=30).diagnostics)

    assert stack_check(None) == []
    diagnostics = stack_check({"tests": ["NONE"]})
    assert {d.policyName for d in diagnostics} == {"health-check"}
    assert {d.urn for d in diagnostics} == {d.options.urn for d in runs_images}


def test_pulumi_runs_the_pack_in_the_project_s_virtualenv() -> None:
    """Pulumi's Python host runs the pack with PulumiPolicy.yaml's virtualenv, relative to the
    pack's directory: the project's, where requirements-dev.txt installs pulumi-policy."""
    pack = yaml.safe_load((REPO_ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["name"] == "python"
    virtualenv = (REPO_ROOT / "policy" / pack["runtime"]["options"]["virtualenv"]).resolve()
    assert virtualenv == REPO_ROOT / ".venv"
    requirements = (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r policy/requirements.txt" in requirements
