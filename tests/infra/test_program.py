"""The resource graph the program declares, checked under Pulumi's mock runtime."""

import ipaddress
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

import contract
from engine_harness.program import run_program
from instance_specs import stack_users
from rest_api_stack import HEALTHY_WITHIN_SECONDS, dockerfile_base_image
from settings import KEYS_BY_NAME, ConfigError
from tests.conftest import REPO_ROOT
from tests.infra.conftest import (
    PROJECT,
    Deploy,
    Deployment,
    RecordingMocks,
    base_image_id,
    full_config,
    labels_of,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def default(deploy: Deploy) -> Deployment:
    return deploy()


def test_counts_of_each_resource(default: Deployment) -> None:
    assert len(default.mocks.of_type(":Network")) == 1
    assert len(default.mocks.of_type(":Image")) == 2
    assert len(default.api_containers) == 2
    assert default.proxy is not None


def test_replicas_follow_config(deploy: Deploy) -> None:
    assert len(deploy(apiReplicas="5").api_containers) == 5


def test_names_derive_from_project_stack_and_role(deploy: Deploy) -> None:
    one, two = deploy(stack="alpha"), deploy(stack="beta")
    prefix = f"{PROJECT}-alpha"
    # Logical names (what `pulumi up` shows, and the API containers' Docker names start with).
    assert {r.name for r in one.mocks.resources if r.typ.startswith("docker:")} == {
        f"{prefix}-{suffix}"
        for suffix in ("network", "api-image", "proxy-image", "api-1", "api-2", "proxy")
    }
    # Docker names: the API containers' are pulumi-docker's (logical name + random suffix).
    names_one = {c.outputs["name"] for c in one.containers}
    names_two = {c.outputs["name"] for c in two.containers}
    assert not names_one & names_two, "two stacks on one host would collide"
    for container in one.api_containers:
        assert "name" not in container.inputs, f"{container.name} has a fixed name"
        assert re.fullmatch(rf"{container.name}-[0-9a-f]{{7}}", container.outputs["name"])
    assert one.proxy.inputs["name"] == f"{prefix}-proxy"
    (network,) = one.mocks.of_type(":Network")
    assert network.inputs["name"] == f"{prefix}-net"
    tags = {image.inputs["imageName"].split(":")[1] for image in one.mocks.of_type(":Image")}
    assert tags == {"alpha"}


def test_api_containers_are_replaced_create_first_and_the_proxy_delete_first(
    default: Deployment,
) -> None:
    """pulumi-docker asks for delete-first on every container: the API containers override it
    (a new one starts beside the old); the proxy keeps it (the old one holds the host port).
    Any change replaces a container (nothing is updated in place)."""
    for container in default.api_containers:
        assert container.options.delete_before_replace is False, container.name
        assert container.options.replace_on_changes == ("*",), container.name
    assert default.proxy.options.delete_before_replace is True
    assert default.proxy.options.replace_on_changes == ("*",)


def test_containers_stop_gracefully_within_their_grace_period(default: Deployment) -> None:
    """Removal sends the image's STOPSIGNAL and waits destroyGraceSeconds before SIGKILL:
    gunicorn's own graceful timeout (plus the 2 s it lingers after, refusing connections) fits
    inside it."""
    for container in default.api_containers:
        envs = dict(env.split("=", 1) for env in container.inputs["envs"])
        graceful = int(envs["GUNICORN_GRACEFUL_TIMEOUT"])
        assert graceful + 2 < container.inputs["destroyGraceSeconds"], container.name
    assert default.proxy.inputs["destroyGraceSeconds"] > 0


def test_api_containers_share_the_alias_and_publish_nothing(default: Deployment) -> None:
    for container in default.api_containers:
        (network,) = container.inputs["networksAdvanced"]
        assert network["aliases"] == [contract.API_ALIAS], container.name
        assert not container.inputs.get("ports"), f"{container.name} publishes a port"
        assert f"PORT={contract.API_PORT}" in container.inputs["envs"], container.name


def test_api_containers_have_no_fixed_address(default: Deployment) -> None:
    """Docker picks each address: a new container can start while the old one still holds its
    own."""
    for container in default.api_containers:
        (network,) = container.inputs["networksAdvanced"]
        assert "ipv4Address" not in network, container.name


@pytest.mark.parametrize("subnet", ["172.28.10.0/24", "10.9.8.64/26"])
def test_network_uses_the_configured_subnet(deploy: Deploy, subnet: str) -> None:
    (network,) = deploy(networkSubnet=subnet).mocks.of_type(":Network")
    (ipam,) = network.inputs["ipamConfigs"]
    # The gateway is Docker's default, declared so the provider reads back what was declared.
    assert ipam == {"subnet": subnet, "gateway": str(ipaddress.ip_network(subnet)[1])}


def test_proxy_follows_the_api_by_its_alias(deploy: Deploy) -> None:
    deployment = deploy(apiReplicas="3")
    assert (
        f"API_UPSTREAM={contract.API_ALIAS}:{contract.API_PORT}" in deployment.proxy.inputs["envs"]
    )


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(None, None), ("10.0.0.5, 10.1.0.0/16", "LOAD_BALANCER_ADDRESSES=10.0.0.5,10.1.0.0/16")],
)
def test_the_proxy_believes_forwarded_headers_from_the_load_balancer_alone(
    deploy: Deploy, configured: str | None, expected: str | None
) -> None:
    config = {"loadBalancerAddresses": configured} if configured else {}
    envs = deploy(**config).proxy.inputs["envs"]
    given = [env for env in envs if env.startswith("LOAD_BALANCER_ADDRESSES=")]
    assert given == ([expected] if expected else []), envs


def test_a_new_api_release_leaves_the_proxy_alone(deploy: Deploy) -> None:
    """A new API image replaces the API containers only: nothing of the proxy depends on them."""
    before = deploy()
    after = deploy(apiBaseImage="registry:5000/py:4")
    assert [c.inputs["image"] for c in after.api_containers] != [
        c.inputs["image"] for c in before.api_containers
    ]
    # (Each run under these mocks makes a new CA and key: the TLS environment differs.)
    assert without_tls(after.proxy.inputs) == without_tls(before.proxy.inputs)


def without_tls(inputs: dict[str, Any]) -> dict[str, Any]:
    envs = [env for env in inputs["envs"] if not env.startswith("TLS_")]
    return {**inputs, "envs": envs}


def test_api_containers_ask_the_health_path_of_the_contract(default: Deployment) -> None:
    for container in default.api_containers:
        assert f"API_HEALTH_PATH={contract.API_HEALTH_PATH}" in container.inputs["envs"]


@pytest.mark.parametrize(("value", "expected"), [(None, "off"), ("true", "on"), ("false", "off")])
def test_api_access_log_follows_config(deploy: Deploy, value: str | None, expected: str) -> None:
    deployment = deploy(**({} if value is None else {"apiAccessLog": value}))
    for container in deployment.api_containers:
        assert f"GUNICORN_ACCESS_LOG={expected}" in container.inputs["envs"], container.name


@pytest.mark.parametrize(
    ("config", "ip", "port", "url"),
    [
        ({}, "127.0.0.1", 8080, "https://127.0.0.1:8080"),
        (
            {"proxyBindAddress": "0.0.0.0", "proxyPort": "9000"},
            "0.0.0.0",
            9000,
            "https://127.0.0.1:9000",
        ),
        ({"proxyBindAddress": "::1", "proxyPort": "8081"}, "::1", 8081, "https://[::1]:8081"),
        ({"tlsMode": "off"}, "127.0.0.1", 8080, "http://127.0.0.1:8080"),
    ],
)
def test_proxy_publishes_on_the_configured_address(
    deploy: Deploy, config: dict[str, str], ip: str, port: int, url: str
) -> None:
    deployment = deploy(**config)
    (published,) = deployment.proxy.inputs["ports"]
    assert published["ip"] == ip
    assert published["external"] == port
    https = url.startswith("https://")
    assert published["internal"] == (
        contract.PROXY_HTTPS_PORT if https else contract.PROXY_HTTP_PORT
    )
    assert deployment.exports[contract.EXPORT_URL] == url
    # The proxy sends the API this Host (never the client's): the host:port of the URL.
    assert f"PUBLIC_HOST={url.split('://')[1]}" in deployment.proxy.inputs["envs"]


def test_containers_reference_images_by_digest(default: Deployment) -> None:
    digests = {
        image.inputs["imageName"].rsplit(":", 1)[0].rsplit("-", 1)[1]: image
        for image in default.mocks.of_type(":Image")
    }
    assert set(digests) == {"api", "proxy"}
    for container in default.containers:
        assert container.inputs["image"].startswith("sha256:"), container.name
    assert default.exports[contract.EXPORT_API_IMAGE] == default.api_containers[0].inputs["image"]
    assert default.exports[contract.EXPORT_PROXY_IMAGE] == default.proxy.inputs["image"]


def test_images_are_local_pinned_and_relative(default: Deployment) -> None:
    for image in default.mocks.of_type(":Image"):
        build = image.inputs["build"]
        assert image.inputs["skipPush"] is True, image.name
        assert build["platform"] == "linux/amd64", image.name
        # Pulumi runs the program in infra/: contexts are stable relative paths from there.
        assert build["context"] in {f"../{contract.API_CONTEXT}", f"../{contract.PROXY_CONTEXT}"}
        assert build["dockerfile"] == f"{build['context']}/Dockerfile", image.name


def test_unconfigured_base_images_are_the_dockerfiles_defaults(default: Deployment) -> None:
    args = {i.name: i.inputs["build"]["args"] for i in default.mocks.of_type(":Image")}
    api, proxy = (dockerfile_base_image(c) for c in (contract.API_CONTEXT, contract.PROXY_CONTEXT))
    assert api.startswith("python:") and proxy.startswith("nginx:")
    assert args == {
        f"{PROJECT}-unit-api-image": {
            "BASE_IMAGE": api,
            "BASE_IMAGE_ID": base_image_id(api),
            "PYTHON": "python3",
            "SOURCE_BUILDS": "",
        },
        f"{PROJECT}-unit-proxy-image": {
            "BASE_IMAGE": proxy,
            "BASE_IMAGE_ID": base_image_id(proxy),
        },
    }


def test_base_images_are_passed_by_name_and_engine_id(deploy: Deploy) -> None:
    """The base's id is a build input: a new base under the same name is a new build."""
    deployment = deploy(apiBaseImage="registry:5000/py:3", proxyBaseImage="ngx:1")
    args = {i.name: i.inputs["build"]["args"] for i in deployment.mocks.of_type(":Image")}
    assert args == {
        f"{PROJECT}-unit-api-image": {
            "BASE_IMAGE": "registry:5000/py:3",
            "BASE_IMAGE_ID": base_image_id("registry:5000/py:3"),
            "PYTHON": "python3",
            "SOURCE_BUILDS": "",
        },
        f"{PROJECT}-unit-proxy-image": {
            "BASE_IMAGE": "ngx:1",
            "BASE_IMAGE_ID": base_image_id("ngx:1"),
        },
    }


@pytest.mark.parametrize(
    ("config", "base"),
    [
        ({}, "pypy:3.11-slim"),
        ({"apiBaseImage": "offline.invalid/pypy:3.11-trixie"}, "offline.invalid/pypy:3.11-trixie"),
    ],
)
def test_the_pypy_runtime_builds_the_api_on_pypy(
    deploy: Deploy, config: dict[str, str], base: str
) -> None:
    deployment = deploy(apiRuntime="pypy", apiMemoryMb="768", **config)
    args = {i.name: i.inputs["build"]["args"] for i in deployment.mocks.of_type(":Image")}
    assert args[f"{PROJECT}-unit-api-image"]["BASE_IMAGE"] == base
    assert args[f"{PROJECT}-unit-api-image"]["PYTHON"] == "pypy3"
    assert args[f"{PROJECT}-unit-api-image"]["SOURCE_BUILDS"] == "markupsafe"
    assert "PYTHON" not in args[f"{PROJECT}-unit-proxy-image"]
    for container in deployment.api_containers:
        assert "GUNICORN_WARMUP_REQUESTS=2000" in container.inputs["envs"], container.name


def test_pypy_with_cpythons_memory_limit_is_refused() -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match="apiMemoryMb: 256 MiB is too little for apiRuntime pypy"):
        run_program(mocks, "unit", full_config({"apiRuntime": "pypy"}), PROJECT)
    assert not mocks.resources


def test_a_base_image_not_on_the_engine_yet_is_built_without_its_id(
    deploy: Deploy, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = deploy(missing_images={"ngx:1"}, apiBaseImage="py:3", proxyBaseImage="ngx:1")
    args = {i.name: i.inputs["build"]["args"] for i in deployment.mocks.of_type(":Image")}
    assert args[f"{PROJECT}-unit-proxy-image"] == {"BASE_IMAGE": "ngx:1", "BASE_IMAGE_ID": ""}
    assert args[f"{PROJECT}-unit-api-image"]["BASE_IMAGE_ID"] == base_image_id("py:3")
    # The mock runtime hands the program's warnings to Python's logging.
    assert "base image ngx:1 is not in the Docker engine's image store" in caplog.text


@pytest.mark.parametrize("role", ["api", "proxy"])
def test_every_container_is_hardened(default: Deployment, role: str) -> None:
    containers = default.api_containers if role == "api" else [default.proxy]
    user = stack_users(f"{PROJECT}-unit").of(role)
    for container in containers:
        inputs = container.inputs
        assert inputs["user"] == user and not inputs["user"].startswith("0"), container.name
        assert inputs["readOnly"] is True, container.name
        assert "/tmp" in inputs["tmpfs"], container.name
        assert inputs["capabilities"] == {"drops": ["ALL"]}, container.name
        assert "no-new-privileges=true" in inputs["securityOpts"], container.name
        assert inputs["memory"] > 0, container.name
        limit = KEYS_BY_NAME["processLimit"].default
        assert f"PROCESS_LIMIT={limit}" in inputs["envs"], container.name
        assert inputs["logDriver"] == "local" and "logOpts" not in inputs, container.name
        assert inputs["restart"] == "unless-stopped", container.name


def test_containers_declare_nothing_docker_merges_host_defaults_into(
    default: Deployment,
) -> None:
    """Docker merges a host's daemon.json defaults into a container's log options and
    ulimits, and sets swap itself; pulumi-docker reads them back, and any difference from the
    declaration is a change on every `up` (docs/provider-fidelity.md). So none is declared: the
    `local` log driver rotates by default, each image lowers its process limit itself, and
    swap is left to Docker and not compared."""
    for container in default.containers:
        assert not {"logOpts", "ulimits", "memorySwap"} & set(container.inputs), container.name
        assert container.options.ignore_changes == ("memorySwap",), container.name


def test_each_stack_runs_each_role_as_a_uid_of_its_own(deploy: Deploy) -> None:
    """processLimit (RLIMIT_NPROC) counts every process of a uid on the host: the API and the
    proxy of each stack have uids no other stack's role has."""
    users = {
        (stack, labels_of(container)[contract.LABEL_ROLE]): container.inputs["user"]
        for stack in ("unit", "prod", "staging")
        for container in deploy(stack).containers
    }
    assert len(set(users.values())) == 6, users
    for (stack, role), user in users.items():
        uid, gid = map(int, user.split(":"))
        assert uid == gid and uid in contract.STACK_UIDS, (stack, role, user)
        assert user == stack_users(f"{PROJECT}-{stack}").of(role), (stack, role, user)


def test_a_changed_process_limit_reaches_the_containers(deploy: Deploy) -> None:
    for container in deploy(processLimit="1024").containers:
        assert "PROCESS_LIMIT=1024" in container.inputs["envs"], container.name


def test_every_container_is_waited_for_until_healthy(default: Deployment) -> None:
    """One ContainerHealthy per container (not pulumi-docker's wait, which says nothing of why),
    bounded by the stated time."""
    gates = default.mocks.of_type("dynamic:Resource")
    waited = {gate.inputs["container_id"]: gate for gate in gates}
    assert set(waited) == {f"{c.name}-id" for c in default.containers}
    for container in default.containers:
        assert container.inputs["wait"] is False, container.name
        gate = waited[f"{container.name}-id"]
        assert gate.name == f"{container.name}-healthy"
        assert gate.inputs["timeout"] == HEALTHY_WITHIN_SECONDS, gate.name


def test_every_resource_is_labelled(default: Deployment) -> None:
    for resource in [*default.containers, *default.mocks.of_type(":Network")]:
        labels = labels_of(resource)
        assert labels[contract.LABEL_PROJECT] == PROJECT, resource.name
        assert labels[contract.LABEL_STACK] == "unit", resource.name


def test_gunicorn_trusts_forwarded_headers_only_from_the_stack_network(
    default: Deployment,
) -> None:
    for container in default.api_containers:
        (trusted,) = [e for e in container.inputs["envs"] if e.startswith("FORWARDED_ALLOW_IPS=")]
        network = ipaddress.ip_network(trusted.split("=", 1)[1])
        assert str(network) == "172.28.10.0/24", f"{container.name} trusts {network}"


def test_exports(default: Deployment) -> None:
    prefix = f"{PROJECT}-unit"
    assert default.exports[contract.EXPORT_NETWORK] == f"{prefix}-net"
    assert default.exports[contract.EXPORT_API_CONTAINERS] == [
        c.outputs["name"] for c in sorted(default.api_containers, key=lambda c: c.name)
    ]
    assert default.exports[contract.EXPORT_PROXY_CONTAINER] == f"{prefix}-proxy"


def test_proxy_is_created_after_the_api_containers_are_healthy(deploy: Deploy) -> None:
    deployment = deploy(apiReplicas="3")
    api_names = {c.name for c in deployment.api_containers}
    waits = {f"{name}-healthy" for name in api_names}
    before_proxy = deployment.mocks.completed_before[deployment.proxy.name]
    missing = (api_names | waits) - before_proxy
    assert not missing, f"proxy registered before {missing}"


def test_proxy_reuses_time_wait_ports_for_upstream_connections(default: Deployment) -> None:
    assert default.proxy.inputs["sysctls"] == {"net.ipv4.tcp_tw_reuse": "1"}
    for container in default.api_containers:
        assert "sysctls" not in container.inputs, container.name


def test_pulumi_finds_the_programs_dependencies_where_it_looks() -> None:
    """`pulumi install` (and `pulumi` creating the virtualenv) runs `pip install -r
    requirements.txt` in the program's directory, `main:`, and installs nothing when there is
    none there (pulumi sdk/python/toolchain/pip.go InstallDependencies): the one there must
    name every dependency of the repository's list."""
    program_dir = REPO_ROOT / yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["main"]
    resolved = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-index",
            "-r",
            "requirements.txt",
        ],
        cwd=program_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for requirement in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if requirement and not requirement.startswith("#"):
            name = re.split(r"[<>=\[ ]", requirement)[0]
            assert f"Requirement already satisfied: {name}" in resolved, requirement
