"""Base images: the offline ones are named so that no registry can serve them, and a stack
whose local-only base image is missing is refused before anything is registered."""

import pytest

from engine_harness.program import offline_base_images, run_program, stack_config
from rest_api_stack import is_local_only, registry_host
from settings import ConfigError
from tests.infra.conftest import PROJECT, RecordingMocks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "registry"),
    [
        # A Docker Hub account's repository: anyone who owns `offline` could publish it.
        ("offline/python:3.13-trixie", None),
        ("python:3.14-slim-trixie", None),
        # A registry on this host (port 443, then 80): whatever listens there.
        ("localhost/python:3.13", "localhost"),
        ("registry:5000/team/python:3.14", "registry"),
        ("Offline.INVALID:5000/python:3", "offline.invalid"),
    ],
)
def test_the_registry_is_read_as_docker_reads_it(name: str, registry: str | None) -> None:
    assert registry_host(name) == registry


@pytest.mark.parametrize(
    ("name", "local_only"),
    [
        ("offline.invalid/python:3.13-trixie", True),
        ("mine.invalid:5000/team/nginx:1", True),
        ("offline/python:3.13-trixie", False),
        ("localhost/python:3.13", False),
        ("invalid/python:3", False),  # Docker Hub's `invalid` account
        ("registry.invalid.example/python:3", False),
    ],
)
def test_local_only_means_a_registry_under_invalid(name: str, local_only: bool) -> None:
    assert is_local_only(name) is local_only


@pytest.mark.parametrize("role", ["api", "proxy", "pypy"])
def test_the_offline_base_images_are_under_a_registry_that_never_resolves(role: str) -> None:
    """RFC 6761: names under .invalid never resolve, so Docker can pull them from nowhere."""
    name = offline_base_images({})[role]  # images.env's, not an environment's override
    host = registry_host(name)
    assert host is not None and host.endswith(".invalid"), name
    assert is_local_only(name), name


def test_dev_builds_on_the_official_images_and_swarm_on_the_offline_ones() -> None:
    """The dev stack names no base image (`make up` sets the local ones only where the engine
    can't pull the official ones: base-images/choose.py); the swarm stack names the offline ones."""
    dev, swarm = stack_config("dev"), stack_config("swarm")
    bases = offline_base_images({})
    for key, role in (("apiBaseImage", "api"), ("proxyBaseImage", "proxy")):
        assert f"{PROJECT}:{key}" not in dev, f"Pulumi.dev.yaml: {key}"
        assert swarm[f"{PROJECT}:{key}"] == bases[role], f"Pulumi.swarm.yaml: {key}"


@pytest.mark.parametrize(
    "missing",
    [["apiBaseImage"], ["proxyBaseImage"], ["apiBaseImage", "proxyBaseImage"]],
)
def test_a_missing_local_only_base_image_is_refused_before_anything_is_registered(
    missing: list[str],
) -> None:
    """The dev stack on the offline base images (local-only): those the engine lacks."""
    bases = offline_base_images({})
    dev = stack_config("dev") | {
        f"{PROJECT}:apiBaseImage": bases["api"],
        f"{PROJECT}:proxyBaseImage": bases["proxy"],
    }
    names = {key: dev[f"{PROJECT}:{key}"] for key in missing}
    mocks = RecordingMocks()
    mocks.missing_images = set(names.values())
    with pytest.raises(ConfigError) as raised:
        run_program(mocks, "unit", dev, PROJECT)
    message = str(raised.value)
    for key, name in names.items():
        assert f"{key}: base image {name} is not on the Docker engine" in message, message
    assert message.count("Build it with `make base-images`") == len(missing), message
    assert "nothing was created" in message
    assert not mocks.resources, [r.name for r in mocks.resources]
