"""Config validation: every bad value fails before any resource is registered, naming its key
and the accepted range."""

import pytest

from config_keys import one_of, text, text_list
from engine_harness.program import run_program
from settings import KEYS, ConfigError, Settings, read
from tests.infra.conftest import PROJECT, Deploy, RecordingMocks, full_config

pytestmark = pytest.mark.unit


def deploy_invalid(config: dict[str, str]) -> tuple[str, RecordingMocks]:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(mocks, "unit", full_config(config))
    return str(raised.value), mocks


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("proxyPort", "0", "from 1 to 65535"),
        ("proxyPort", "65536", "from 1 to 65535"),
        ("proxyPort", "-1", "from 1 to 65535"),
        ("proxyPort", "http", "from 1 to 65535"),
        ("proxyPort", "80.5", "from 1 to 65535"),
        ("proxyPort", "", "from 1 to 65535"),
        ("apiReplicas", "0", "from 1 to 16"),
        ("apiReplicas", "1000", "from 1 to 16"),
        ("apiReplicas", "two", "from 1 to 16"),
        ("apiWorkers", "0", "from 1 to 32"),
        ("apiThreads", "100", "from 1 to 64"),
        ("apiMemoryMb", "16", "from 64 to 65536"),
        ("proxyMemoryMb", "lots", "from 32 to 65536"),
        ("processLimit", "1", "from 32 to 65536"),
        ("rateLimitPerSecond", "-5", "from 0 to 100000"),
        ("proxyBindAddress", "localhost", "an IPv4 or IPv6 address"),
        ("proxyBindAddress", "256.0.0.1", "an IPv4 or IPv6 address"),
        ("proxyBindAddress", "", "an IPv4 or IPv6 address"),
        ("proxyBindAddress", "fe80::1%eth0", "with no zone"),
        ("proxyBindAddress", "::ffff:127.0.0.1", "not IPv4-mapped"),
        ("apiBaseImage", "Python:3", "an image reference"),
        ("apiBaseImage", "python:3 ; rm -rf /", "an image reference"),
        ("apiBaseImage", "", "an image reference"),
        ("proxyBaseImage", "nginx:", "an image reference"),
        ("proxyBaseImage", "nginx@sha256:123", "an image reference"),
        ("imagePlatform", "windows/amd64", "a Linux platform"),
        ("networkSubnet", "172.28.10.1/24", "a private IPv4 network address"),
        ("networkSubnet", "8.8.8.0/24", "a private IPv4 network address"),
        ("networkSubnet", "172.16.0.0/12", "from /16 to /26"),
        ("networkSubnet", "172.28.10.0/27", "from /16 to /26"),
        ("networkSubnet", "fd00:1::/64", "a private IPv4 network address"),
        ("networkSubnet", "lan", "a private IPv4 network address"),
        ("apiAccessLog", "sometimes", "true or false"),
        ("loadBalancerAddresses", "10.0.0.1/8", "(not one: '10.0.0.1/8')"),
        ("loadBalancerAddresses", "10.0.0.5,lb.example.com,10.0.0.300", "(not one: 'lb.example"),
        ("loadBalancerAddresses", "10.0.0.5,0.0.0.0/0", "(not one: '0.0.0.0/0')"),
        ("loadBalancerAddresses", "::/0", "(not one: '::/0')"),
        ("loadBalancerAddresses", "", "IPv4 or IPv6 addresses or networks"),
    ],
)
def test_invalid_value_names_key_and_range(key: str, value: str, expected: str) -> None:
    message, mocks = deploy_invalid({key: value})
    assert f"{key}: " in message and expected in message, message
    assert mocks.resources == [], "resources were registered despite invalid config"


def test_unknown_key_is_reported_with_the_known_ones() -> None:
    message, mocks = deploy_invalid({"proxyport": "8080"})
    assert "proxyport: unknown key" in message and "proxyPort" in message, message
    assert mocks.resources == []


def test_all_problems_are_reported_together() -> None:
    message, _ = deploy_invalid({"proxyPort": "0", "apiReplicas": "0", "apiBaseImage": "A"})
    for key in ("proxyPort", "apiReplicas", "apiBaseImage"):
        assert f"{key}: " in message, message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("proxyPort", "1"),
        ("proxyPort", "65535"),
        ("apiReplicas", "1"),
        ("apiReplicas", "16"),
        ("rateLimitPerSecond", "0"),
        ("proxyBindAddress", "0.0.0.0"),
        ("proxyBindAddress", "::"),
        ("apiBaseImage", "registry.example:5000/team/python:3.14-slim"),
        ("apiBaseImage", "python@sha256:" + "a" * 64),
        ("imagePlatform", "linux/arm64"),
        ("networkSubnet", "10.0.0.0/16"),
        ("networkSubnet", "192.168.5.64/26"),
        ("apiAccessLog", "true"),
        ("loadBalancerAddresses", "10.0.0.5"),
        ("loadBalancerAddresses", "10.0.0.0/8,fd00::/8,192.168.1.7/32"),
    ],
)
def test_boundary_values_are_accepted(deploy: Deploy, key: str, value: str) -> None:
    assert deploy(**{key: value}).containers


@pytest.mark.parametrize(
    ("written", "declared"),
    [("0:0:0:0:0:0:0:1", "::1"), ("::0001", "::1"), ("0::", "::"), ("127.0.0.1", "127.0.0.1")],
)
def test_the_bind_address_is_declared_as_docker_reports_it(
    deploy: Deploy, written: str, declared: str
) -> None:
    """Docker reports a published port's address in its canonical form, and pulumi-docker
    compares that with the declared one on every up: any other spelling would replace the
    proxy each time."""
    (port,) = deploy(proxyBindAddress=written).proxy.inputs["ports"]
    assert port["ip"] == declared


def test_every_default_is_accepted_and_reads_back_as_itself() -> None:
    """What `pulumi new` and Pulumi.dev.yaml write for a default is what the program uses."""
    for key in KEYS:
        assert key.meaning and key.accepted, key.name
        if key.default is not None:
            assert key.default_text is not None
            assert key.parse(key.default_text) == key.default, key.name


def test_every_key_is_a_settings_field_and_every_field_a_key() -> None:
    assert [key.field for key in KEYS] == list(Settings.__dataclass_fields__)


# Kinds of key the table expresses beyond today's: a choice, a list, a secret with no default.
MODE = one_of("mode", "how it runs", ("self-signed", "provided", "off"), "self-signed")
HOSTS = text_list("hosts", "names it answers to", "host names", lambda name: "." in name)
PEM = text("pem", "a private key", "a PEM block", lambda v: v.startswith("-----BEGIN"), secret=True)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ({}, {"mode": "self-signed", "hosts": (), "pem": None}),
        (
            {"mode": "off", "hosts": '["a.example", "b.example"]', "pem": "-----BEGIN X"},
            {"mode": "off", "hosts": ("a.example", "b.example"), "pem": "-----BEGIN X"},
        ),
    ],
)
def test_choices_lists_and_secrets_are_read(
    configured: dict[str, str], expected: dict[str, object]
) -> None:
    assert read(configured.get, (MODE, HOSTS, PEM)) == (expected, [])


def test_bad_choices_lists_and_secrets_are_all_named_and_no_secret_is_shown() -> None:
    configured = {"mode": "on", "hosts": '["a.example", "localhost"]', "pem": "hunter2"}
    _, problems = read(configured.get, (MODE, HOSTS, PEM))
    assert [str(problem) for problem in problems] == [
        "mode: 'on' is not one of self-signed, provided, off",
        """hosts: '["a.example", "localhost"]' is not a comma-separated list of host names"""
        " (not one: 'localhost')",
        "pem: its value (a secret) is not a PEM block",
    ]
    # Comma-separated, as `pulumi config set hosts a.example,b.example` writes it.
    assert read({"hosts": "a.example, b.example"}.get, (HOSTS,)) == (
        {"hosts": ("a.example", "b.example")},
        [],
    )


def test_a_key_under_another_projects_name_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a stack file copied by `pulumi new` under a new project name holds: the program
    deploys with its own keys and says which ones it does not read."""
    mocks = RecordingMocks()
    config = full_config({"proxyPort": "9000"}) | {"old-name:proxyPort": "8081"}
    exports = run_program(mocks, "unit", config)
    assert exports["url"] == "https://127.0.0.1:9000"
    assert "not read: old-name:proxyPort. " in caplog.text
    assert f"This project is {PROJECT!r}: its keys are {PROJECT}:<key>." in caplog.text


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"orchestrator": "swarm", "proxyBindAddress": "127.0.0.1"},
            "proxyBindAddress: not applied with orchestrator swarm",
        ),
        ({"proxyReplicas": "2"}, "proxyReplicas: applies with orchestrator swarm only"),
        ({"overlayEncrypted": "true"}, "overlayEncrypted: applies with orchestrator swarm only"),
        ({"imageRegistry": "registry:5000"}, "imageRegistry: applies with orchestrator swarm only"),
        (
            {"proxyConstraints": "node.role==manager"},
            "proxyConstraints: applies with orchestrator swarm only",
        ),
        (
            {"orchestrator": "swarm", "imageRegistry": "https://registry.example.com"},
            "imageRegistry: 'https://registry.example.com' is not a registry host[:port]",
        ),
        (
            {"orchestrator": "swarm", "imageRegistry": "registry.example.com/Team"},
            "imageRegistry: 'registry.example.com/Team' is not a registry host[:port]",
        ),
        (
            {"orchestrator": "swarm", "proxyConstraints": "node.role=manager"},
            "proxyConstraints: 'node.role=manager' is not a comma-separated list of Swarm",
        ),
        (
            {"orchestrator": "swarm", "proxyConstraints": "role==manager"},
            "proxyConstraints: 'role==manager' is not a comma-separated list of Swarm",
        ),
        ({"orchestrator": "swarm", "proxyReplicas": "0"}, "proxyReplicas: 0 is out of range"),
        ({"orchestrator": "kubernetes"}, "orchestrator: 'kubernetes' is not one of engine, swarm"),
    ],
)
def test_a_key_the_orchestrator_can_not_apply_is_refused(
    config: dict[str, str], expected: str
) -> None:
    message, mocks = deploy_invalid(config)
    assert expected in message, message
    assert mocks.resources == [], "resources were registered despite invalid config"


def test_swarm_keys_at_their_defaults_are_accepted_on_one_engine(deploy: Deploy) -> None:
    """What `pulumi new` and Pulumi.dev.yaml write: every key, at its default."""
    deployment = deploy(proxyReplicas="1", overlayEncrypted="false")
    assert deployment.containers and not deployment.mocks.of_type(":Service")


@pytest.mark.parametrize(
    ("config", "need"),
    [
        # 2 replicas x 2 (old and new) x (1 master + 1 x (1 + 64 threads) + 8 spare)
        ({"apiThreads": "64"}, 296),
        # 16 x 2 x (1 + 4 x (1 + 8) + 8)
        ({"apiReplicas": "16", "apiWorkers": "4", "apiThreads": "8"}, 1440),
    ],
)
def test_a_process_limit_below_a_deploys_need_is_refused_naming_the_keys(
    config: dict[str, str], need: int
) -> None:
    """processLimit bounds all of a stack's API containers on a host together, and a deploy
    runs the old and new ones side by side."""
    message, mocks = deploy_invalid({**config, "processLimit": "256"})
    assert f"processLimit: 256 is below the {need} processes and threads" in message, message
    for key in ("apiReplicas", "apiWorkers", "apiThreads"):
        assert key in message, message
    assert mocks.resources == [], "resources were registered despite invalid config"


def test_a_process_limit_that_covers_a_deploy_exactly_is_accepted(deploy: Deploy) -> None:
    assert deploy(apiThreads="64", processLimit="296").containers


@pytest.mark.parametrize(
    ("config", "key", "keys"),
    [
        (
            {"processLimit": "256", "apiThreads": "64"},
            "processLimit",
            {"processLimit", "apiReplicas", "apiWorkers", "apiThreads"},
        ),
        ({"apiRuntime": "pypy"}, "apiMemoryMb", {"apiMemoryMb", "apiRuntime"}),
        (
            {"tlsMode": "off", "httpRedirectPort": "8081"},
            "httpRedirectPort",
            {"httpRedirectPort", "tlsMode"},
        ),
        ({"httpRedirectPort": "8080"}, "httpRedirectPort", {"httpRedirectPort", "proxyPort"}),
        ({"proxyReplicas": "2"}, "proxyReplicas", {"proxyReplicas", "orchestrator"}),
        ({"proxyPort": "http"}, "proxyPort", {"proxyPort"}),
    ],
)
def test_a_problem_carries_its_keys_as_data(
    config: dict[str, str], key: str, keys: set[str]
) -> None:
    """Callers tell which key failed from the problem's fields, never from its message."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(mocks, "unit", full_config(config))
    (problem,) = raised.value.problems
    assert (problem.key, set(problem.keys)) == (key, keys), str(problem)
    assert str(problem).startswith(f"{key}: ") and str(problem) in str(raised.value)
    assert raised.value.keys == keys


def test_a_key_that_fails_on_its_own_is_left_out_of_the_checks_that_read_it() -> None:
    """processLimit unreadable: the deploy-size check, which reads it, does not run, so the one
    problem named is the value's own."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(mocks, "unit", full_config({"processLimit": "lots", "apiThreads": "64"}))
    assert [problem.key for problem in raised.value.problems] == ["processLimit"]
    assert "is not a whole number" in raised.value.problems[0].reason
