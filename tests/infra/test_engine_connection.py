"""The health gates reach the engine as pulumi-docker does: every connection setting of its
provider (or its environment variable) maps to the Docker SDK client they use, and what they
can't honour is refused before anything is created, naming the key."""

import json
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from engine_harness.program import run_program
from health_gate import HealthWait, resolve_connection
from settings import ConfigError
from tests.certificates import Authority
from tests.infra.conftest import RecordingMocks

pytestmark = pytest.mark.unit

CONTEXT = {"Name": "remote", "Endpoints": {"docker": {"Host": "ssh://deploy@manager"}}}


def cert_folder(path: Path) -> Path:
    """A folder as docker's CLI keeps TLS material in: ca.pem, cert.pem, key.pem."""
    authority = Authority.make()
    cert, key = authority.issue(["test client"], client=True)
    path.mkdir(exist_ok=True)
    for name, pem in (("ca.pem", authority.pem), ("cert.pem", cert), ("key.pem", key)):
        (path / name).write_text(pem)
    return path


def resolve(
    home: Path, config: dict[str, str], env: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    return resolve_connection(config.get, env or {}, home)


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        ({}, {}, {"docker_host": None}),
        ({}, {"DOCKER_HOST": "tcp://e:2375"}, {"docker_host": "tcp://e:2375"}),
        (
            {"host": "tcp://c:2375"},
            {"DOCKER_HOST": "tcp://e:2375"},
            {"docker_host": "tcp://c:2375"},
        ),
        # A context's host wins over docker:host, as in the provider.
        (
            {"host": "tcp://c:2375", "context": "remote"},
            {},
            {"docker_host": "ssh://deploy@manager"},
        ),
        ({}, {"DOCKER_CONTEXT": "remote"}, {"docker_host": "ssh://deploy@manager"}),
        (
            {"host": "ssh://deploy@manager:2222", "sshOpts": '["-i", "/k", "-o", "Port=22"]'},
            {},
            {
                "docker_host": "ssh://deploy@manager:2222",
                "docker_ssh_opts": ["-i", "/k", "-o", "Port=22"],
            },
        ),
        (
            {"host": "ssh://deploy@manager"},
            {"DOCKER_SSH_OPTS": "-i /k  -o Port=22"},
            {
                "docker_host": "ssh://deploy@manager",
                "docker_ssh_opts": ["-i", "/k", "-o", "Port=22"],
            },
        ),
        # The provider uses ssh flags with ssh:// only.
        ({"host": "tcp://c:2375", "sshOpts": '["-i", "/k"]'}, {}, {"docker_host": "tcp://c:2375"}),
        (
            {"host": "tcp://c:2376", "caMaterial": "CA", "certMaterial": "C", "keyMaterial": "K"},
            {},
            {"docker_host": "tcp://c:2376", "docker_tls": {"ca": "CA", "cert": "C", "key": "K"}},
        ),
        (
            {"host": "tcp://c:2376"},
            {"DOCKER_CA_MATERIAL": "CA", "DOCKER_CERT_MATERIAL": "C", "DOCKER_KEY_MATERIAL": "K"},
            {"docker_host": "tcp://c:2376", "docker_tls": {"ca": "CA", "cert": "C", "key": "K"}},
        ),
    ],
    ids=[
        "nothing",
        "DOCKER_HOST",
        "host-over-env",
        "context",
        "DOCKER_CONTEXT",
        "sshOpts",
        "DOCKER_SSH_OPTS",
        "sshOpts-not-ssh",
        "material",
        "material-env",
    ],
)
def test_each_setting_maps_as_the_provider_reads_it(
    tmp_path: Path, config: dict[str, str], env: dict[str, str], expected: dict[str, Any]
) -> None:
    meta = tmp_path / ".docker" / "contexts" / "meta" / "f00"
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(CONTEXT))
    assert resolve(tmp_path, config, env) == (expected, [])


@pytest.mark.parametrize("source", ["config", "env"])
def test_cert_path_is_honoured(tmp_path: Path, source: str) -> None:
    folder = cert_folder(tmp_path / "certs")
    config = {"host": "tcp://c:2376"}
    env = {}
    if source == "config":
        config["certPath"] = str(folder)
    else:
        env["DOCKER_CERT_PATH"] = str(folder)
    connection, problems = resolve(tmp_path, config, env)
    assert (connection, problems) == (
        {"docker_host": "tcp://c:2376", "docker_cert_path": str(folder)},
        [],
    )
    client = HealthWait.client(connection)
    try:
        # TLS to the engine, verified by the folder's CA, with the folder's client certificate.
        assert client.api.base_url == "https://c:2376"
        assert client.api.verify == f"{folder}/ca.pem"
        assert client.api.cert == (f"{folder}/cert.pem", f"{folder}/key.pem")
    finally:
        HealthWait.close(client)
    assert (folder / "key.pem").exists(), "closing the client removed the user's key"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"certPath": "{home}/nowhere"}, "docker:certPath: no ca.pem in {home}/nowhere"),
        ({"certMaterial": "C"}, "docker:keyMaterial: missing"),
        ({"keyMaterial": "K", "caMaterial": "CA"}, "docker:certMaterial: missing"),
        ({"certMaterial": "C", "keyMaterial": "K"}, "docker:caMaterial: missing"),
        (
            {"certMaterial": "C", "keyMaterial": "K", "caMaterial": "CA", "certPath": "{home}"},
            "docker:certPath: not with certMaterial",
        ),
        ({"context": "elsewhere"}, "docker:context: no docker context 'elsewhere'"),
        ({"host": "ssh://m", "sshOpts": "-i /k"}, "docker:sshOpts: not a list of ssh's flags"),
    ],
    ids=["cert-path-empty", "no-key", "no-cert", "no-ca", "both", "no-context", "ssh-opts-text"],
)
def test_what_the_gates_cannot_honour_is_named(
    tmp_path: Path, config: dict[str, str], expected: str
) -> None:
    config = {key: value.format(home=tmp_path) for key, value in config.items()}
    _, problems = resolve(tmp_path, config)
    expected = expected.format(home=tmp_path)
    assert any(str(problem).startswith(expected) for problem in problems), problems


def test_a_refused_setting_stops_the_program_before_anything_is_registered() -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(mocks, "unit", {"docker:certPath": "/nonexistent/docker-certs"})
    assert "docker:certPath: no ca.pem in /nonexistent/docker-certs" in str(raised.value)
    assert mocks.resources == [], [r.name for r in mocks.resources]


def test_ssh_opts_reach_the_ssh_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for ssh: writes down its arguments, and serves no engine.
    record = tmp_path / "argv.json"
    fake = tmp_path / "ssh"
    fake.write_text(
        f"#!/usr/bin/env python3\nimport json, sys\nopen({str(record)!r}, 'w').write("
        "json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    flags = ["-i", "/home/me/.ssh/deploy", "-o", "StrictHostKeyChecking=yes"]
    client = HealthWait.client(
        {"docker_host": "ssh://deploy@manager:2222", "docker_ssh_opts": flags}
    )
    try:
        with pytest.raises((docker.errors.DockerException, OSError, ValueError)):
            client.ping()
    finally:
        HealthWait.close(client)
    expected = [*flags, "-l", "deploy", "-p", "2222", "--", "manager", "docker system dial-stdio"]
    assert json.loads(record.read_text()) == expected
