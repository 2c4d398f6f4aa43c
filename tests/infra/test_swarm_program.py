"""The stack on a Docker Swarm (orchestrator swarm), checked under Pulumi's mock runtime: what
infra/swarm.py's docstring says it declares, and nothing of the one-engine stack."""

import base64
import ipaddress
import json
from typing import Any

import pytest
from cryptography import x509

import contract
import swarm
from instance_specs import stack_users
from tests.infra.conftest import PROJECT, Deploy, Deployment, Registered, labels_of

pytestmark = pytest.mark.unit

SWARM = {"orchestrator": "swarm"}
PREFIX = f"{PROJECT}-unit"


@pytest.fixture
def default(deploy: Deploy) -> Deployment:
    """The swarm stack with every other key at its default."""
    return deploy(**SWARM)


def services(deployment: Deployment) -> dict[str, Registered]:
    """The stack's services by role."""
    found = deployment.mocks.of_type(":Service")
    return {labels_of(service)[contract.LABEL_ROLE]: service for service in found}


def container_spec(service: Registered) -> dict[str, Any]:
    return dict(service.inputs["taskSpec"]["containerSpec"])


def host_port(target: int, published: int) -> dict[str, Any]:
    """A port published on the nodes that run the service (no routing mesh)."""
    return {
        "targetPort": target,
        "publishedPort": published,
        "publishMode": "host",
        "protocol": "tcp",
    }


def secret_pems(deployment: Deployment) -> dict[str, str]:
    """The PEM in each Docker secret, by its logical name less the stack's prefix."""
    return {
        secret.name.removeprefix(f"{PREFIX}-"): base64.b64decode(secret.inputs["data"]).decode()
        for secret in deployment.mocks.of_type(":Secret")
    }


def test_services_on_an_overlay_network_and_no_containers(default: Deployment) -> None:
    assert not default.containers
    assert sorted(services(default)) == [contract.ROLE_API, contract.ROLE_PROXY]
    (network,) = default.mocks.of_type(":Network")
    assert network.inputs["name"] == f"{PREFIX}-net"
    assert network.inputs["driver"] == "overlay"
    # Attachable: `docker run --network` can join it, to debug.
    assert network.inputs["attachable"] is True
    (ipam,) = network.inputs["ipamConfigs"]
    subnet = "172.28.10.0/24"
    assert ipam == {"subnet": subnet, "gateway": str(ipaddress.ip_network(subnet)[1])}
    for service in services(default).values():
        (attached,) = service.inputs["taskSpec"]["networksAdvanceds"]
        assert attached["id"] == f"{network.name}-id", service.name


@pytest.mark.parametrize(("value", "options"), [("true", {"encrypted": "true"}), ("false", None)])
def test_the_overlay_is_encrypted_only_when_asked(
    deploy: Deploy, value: str, options: dict[str, str] | None
) -> None:
    (network,) = deploy(**SWARM, overlayEncrypted=value).mocks.of_type(":Network")
    assert network.inputs.get("options") == options


def test_the_api_is_replicated_behind_its_alias_and_rolls_start_first(deploy: Deploy) -> None:
    """apiReplicas tasks that Docker's DNS names by the alias `api`, with no virtual IP (no
    IPVS); a release starts each new task before stopping an old one, and a failed one is
    rolled back by Swarm."""
    api = services(deploy(**SWARM, apiReplicas="3"))[contract.ROLE_API]
    assert api.inputs["name"] == f"{PREFIX}-api"
    assert api.inputs["mode"] == {"replicated": {"replicas": 3}}
    assert api.inputs["endpointSpec"] == {"mode": "dnsrr"}
    (attached,) = api.inputs["taskSpec"]["networksAdvanceds"]
    assert attached["aliases"] == [contract.API_ALIAS]
    update, rollback = api.inputs["updateConfig"], api.inputs["rollbackConfig"]
    assert (update["order"], update["failureAction"], update["parallelism"]) == (
        "start-first",
        "rollback",
        1,
    )
    assert (rollback["order"], rollback["failureAction"]) == ("start-first", "pause")
    assert api.inputs["convergeConfig"] == {"timeout": swarm.CONVERGE_TIMEOUT}
    assert container_spec(api)["env"]["PORT"] == str(contract.API_PORT)


def test_the_proxy_publishes_in_host_mode_one_task_per_chosen_node(deploy: Deploy) -> None:
    deployment = deploy(
        **SWARM,
        proxyReplicas="3",
        proxyPort="9443",
        httpRedirectPort="9080",
        proxyConstraints="node.labels.edge==true, node.role!=manager",
    )
    proxy = services(deployment)[contract.ROLE_PROXY]
    assert proxy.inputs["name"] == f"{PREFIX}-proxy"
    assert proxy.inputs["mode"] == {"replicated": {"replicas": 3}}
    assert proxy.inputs["taskSpec"]["placement"] == {
        "maxReplicas": 1,
        "constraints": ["node.labels.edge==true", "node.role!=manager"],
    }
    assert proxy.inputs["endpointSpec"]["ports"] == [
        host_port(contract.PROXY_HTTPS_PORT, 9443),
        host_port(contract.PROXY_HTTP_PORT, 9080),
    ]
    # A node's old task frees the ports before its new one binds them.
    assert proxy.inputs["updateConfig"]["order"] == "stop-first"
    assert proxy.inputs["updateConfig"]["failureAction"] == "rollback"
    assert proxy.inputs["convergeConfig"] == {"timeout": swarm.CONVERGE_TIMEOUT}
    env = container_spec(proxy)["env"]
    assert env["API_UPSTREAM"] == f"{contract.API_ALIAS}:{contract.API_PORT}"
    assert deployment.exports[contract.EXPORT_HTTP_REDIRECT_URL] == "http://localhost:9080"


def test_an_unconstrained_proxy_may_run_on_any_node(default: Deployment) -> None:
    proxy = services(default)[contract.ROLE_PROXY]
    assert proxy.inputs["mode"] == {"replicated": {"replicas": 1}}
    assert proxy.inputs["taskSpec"]["placement"] == {"maxReplicas": 1}
    assert proxy.inputs["endpointSpec"]["ports"] == [host_port(contract.PROXY_HTTPS_PORT, 8080)]


@pytest.mark.parametrize("role", [contract.ROLE_API, contract.ROLE_PROXY])
def test_every_service_is_hardened_as_far_as_swarm_allows(default: Deployment, role: str) -> None:
    service = services(default)[role]
    spec = container_spec(service)
    assert spec["user"] == stack_users(PREFIX).of(role), service.name
    assert spec["readOnly"] is True, service.name
    assert spec["capDrops"] == ["ALL"] and "capAdds" not in spec, service.name
    assert [mount["type"] for mount in spec["mounts"]] == ["tmpfs"], service.name
    resources = service.inputs["taskSpec"]["resources"]
    # Reserved as well as limited: the scheduler places a task only where it fits.
    assert resources["limits"]["memoryBytes"] == resources["reservation"]["memoryBytes"] > 0
    assert service.inputs["taskSpec"]["logDriver"] == {"name": "local"}, service.name


def test_the_tls_material_is_two_docker_secrets_mounted_in_the_proxy(default: Deployment) -> None:
    pems = secret_pems(default)
    assert sorted(pems) == ["tls-certificate", "tls-private-key"]
    (key,) = [k for k in default.mocks.of_type("PrivateKey") if k.name.endswith("-proxy-key")]
    (certificate,) = default.mocks.of_type("LocallySignedCert")
    assert pems["tls-private-key"] == key.outputs["privateKeyPem"]
    assert pems["tls-certificate"] == certificate.outputs["certPem"]
    (key_secret,) = [s for s in default.mocks.of_type(":Secret") if s.name.endswith("-key")]
    assert "data" in key_secret.secret, "the key's secret is not a Pulumi secret"

    by_role = services(default)
    proxy = container_spec(by_role[contract.ROLE_PROXY])
    # Readable by the proxy's user alone.
    uid, gid = stack_users(PREFIX).proxy.split(":")
    file = {"fileUid": uid, "fileGid": gid, "fileMode": 0o400}
    assert proxy["secrets"] == [
        {"secretId": f"{PREFIX}-{what}-id", "fileName": f"{what}.pem", **file}
        for what in ("tls-certificate", "tls-private-key")
    ]
    assert proxy["env"]["TLS_CERTIFICATE_FILE"] == "/run/secrets/tls-certificate.pem"
    assert proxy["env"]["TLS_PRIVATE_KEY_FILE"] == "/run/secrets/tls-private-key.pem"
    assert "secrets" not in container_spec(by_role[contract.ROLE_API])


def test_no_tls_material_is_in_any_environment(default: Deployment) -> None:
    for service in services(default).values():
        for name, value in container_spec(service)["env"].items():
            assert "-----BEGIN" not in value, f"{service.name} has PEM in {name}"


@pytest.mark.parametrize(
    ("registry", "server"),
    [
        ("registry.example.com:5000/team", "registry.example.com:5000"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_with_a_registry_the_images_are_pushed_there(
    deploy: Deploy, registry: str, server: str
) -> None:
    """Every node pulls them from it (by digest)."""
    for image in deploy(**SWARM, imageRegistry=registry).mocks.of_type(":Image"):
        assert image.inputs["skipPush"] is False, image.name
        assert image.inputs["registry"] == {"server": server}, image.name
        assert image.inputs["imageName"].startswith(f"{registry}/{PREFIX}-"), image.name


def test_without_a_registry_the_images_stay_on_the_engine_that_builds_them(
    default: Deployment,
) -> None:
    for image in default.mocks.of_type(":Image"):
        assert image.inputs["skipPush"] is True, image.name
        assert "registry" not in image.inputs, image.name
        assert image.inputs["imageName"] == f"{image.name.removesuffix('-image')}:unit"


def test_services_run_their_images_by_digest(default: Deployment) -> None:
    by_role = services(default)
    for role, export in (
        (contract.ROLE_API, contract.EXPORT_API_IMAGE),
        (contract.ROLE_PROXY, contract.EXPORT_PROXY_IMAGE),
    ):
        image = container_spec(by_role[role])["image"]
        assert image.startswith("sha256:") and image == default.exports[export], role


def test_every_service_is_waited_for_until_rolled_out(default: Deployment) -> None:
    """One ServiceRolledOut per service, run again whenever its tasks or their number change
    (its revision is the service's whole task spec and mode: a new image, environment, memory
    limit, placement or certificate secret all roll the tasks); the proxy service is declared
    once the API's rollout is over."""
    gates = {gate.inputs["service_id"]: gate for gate in default.mocks.of_type("dynamic:Resource")}
    by_role = services(default)
    assert set(gates) == {f"{service.name}-id" for service in by_role.values()}
    for service in by_role.values():
        gate = gates[f"{service.name}-id"]
        assert gate.name == f"{service.name}-rolled-out"
        assert gate.inputs["image"] == container_spec(service)["image"], gate.name
        assert gate.inputs["timeout"] == swarm.CONVERGE_TIMEOUT_SECONDS, gate.name
        # (as the SDK's output types spell it: snake_case)
        revision = json.loads(gate.inputs["revision"])
        tasks, declared = revision["tasks"], service.inputs["taskSpec"]
        assert tasks["container_spec"]["image"] == declared["containerSpec"]["image"]
        assert tasks["container_spec"]["env"] == declared["containerSpec"]["env"]
        limits = declared["resources"]["limits"]["memoryBytes"]
        assert tasks["resources"]["limits"]["memory_bytes"] == limits
        replicas = service.inputs["mode"]["replicated"]["replicas"]
        assert revision["mode"]["replicated"]["replicas"] == replicas
    api, proxy = by_role[contract.ROLE_API], by_role[contract.ROLE_PROXY]
    assert gates[f"{api.name}-id"].options.urn in proxy.options.dependencies


def test_exports_name_the_services_and_no_containers(default: Deployment) -> None:
    assert default.exports[contract.EXPORT_API_SERVICE] == f"{PREFIX}-api"
    assert default.exports[contract.EXPORT_PROXY_SERVICE] == f"{PREFIX}-proxy"
    assert default.exports[contract.EXPORT_NETWORK] == f"{PREFIX}-net"
    assert contract.EXPORT_API_CONTAINERS not in default.exports
    assert contract.EXPORT_PROXY_CONTAINER not in default.exports
    assert contract.EXPORT_CA_CERTIFICATE in default.exports


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ({}, "https://localhost:8080"),
        ({"publicHost": "api.example.com", "proxyPort": "443"}, "https://api.example.com:443"),
        ({"publicHost": "10.0.0.5"}, "https://10.0.0.5:8080"),
        ({"publicHost": "api.example.com", "tlsMode": "off"}, "http://api.example.com:8080"),
    ],
)
def test_the_url_is_the_public_host(deploy: Deploy, config: dict[str, str], url: str) -> None:
    deployment = deploy(**SWARM, **config)
    assert deployment.exports[contract.EXPORT_URL] == url
    # The proxy sends the API this Host: the URL's host:port.
    proxy = services(deployment)[contract.ROLE_PROXY]
    assert container_spec(proxy)["env"]["PUBLIC_HOST"] == url.split("://")[1]


def test_the_certificate_names_the_public_host_first(deploy: Deploy) -> None:
    deployment = deploy(**SWARM, publicHost="api.example.com")
    (request,) = deployment.mocks.of_type("CertRequest")
    assert request.inputs["subject"]["commonName"] == "api.example.com"
    assert request.inputs["dnsNames"][0] == "api.example.com"
    served = x509.load_pem_x509_certificate(secret_pems(deployment)["tls-certificate"].encode())
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "api.example.com" in {str(name.value) for name in names}


def test_plain_http_on_a_swarm_has_no_secrets(deploy: Deploy) -> None:
    deployment = deploy(**SWARM, tlsMode="off")
    assert not deployment.mocks.of_type(":Secret")
    assert not deployment.mocks.of_type("PrivateKey")
    proxy = services(deployment)[contract.ROLE_PROXY]
    spec = container_spec(proxy)
    assert not spec.get("secrets")
    assert not [name for name in spec["env"] if name.startswith("TLS_") or name == "HSTS"]
    assert proxy.inputs["endpointSpec"]["ports"] == [host_port(contract.PROXY_HTTP_PORT, 8080)]
    assert deployment.exports[contract.EXPORT_URL] == "http://localhost:8080"
    assert contract.EXPORT_CA_CERTIFICATE not in deployment.exports
