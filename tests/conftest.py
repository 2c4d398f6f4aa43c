"""Shared fixtures: the Docker engine, the offline base images, and a check that tests leave
nothing of theirs behind."""

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import docker
import docker.errors
import pytest

from engine_harness.program import offline_base_images

if TYPE_CHECKING:
    from tests.engine_stacks import Deployments, EngineStack

REPO_ROOT = Path(__file__).resolve().parent.parent
# Every Docker object a test creates carries this label, so leftovers can be found.
TEST_LABEL = "pulumi-flask-rebar.test"
# engine_up's deploy function: up(stack, **config overrides) -> the deployed stack.
Up = Callable[..., "EngineStack"]


def unavailable(message: str) -> NoReturn:
    """A test's prerequisite is missing. Under CI=true that fails the test (CI must never pass
    having tested nothing); elsewhere the test is skipped with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of a running Docker engine."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as error:
        unavailable(f"no Docker engine answers ({error}); start one: `make engine`")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The base images the Dockerfiles are built on here: the offline ones must exist."""
    names = offline_base_images()
    for name in names.values():
        try:
            docker_client.images.get(name)
        except docker.errors.ImageNotFound:
            pytest.fail(f"base image {name} is missing: run `make base-images` first")
    return names


@pytest.fixture(scope="session", autouse=True)
def stack_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CAs of the stacks the tests deploy (tlsMode self-signed: each makes its own), which
    every `requests` client of the tests verifies the proxies by (REQUESTS_CA_BUNDLE; the
    engine stacks add theirs as they deploy). Nothing here turns verification off."""
    bundle = tmp_path_factory.mktemp("tls") / "stack-cas.pem"
    bundle.touch()
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    yield bundle
    if previous is None:
        del os.environ["REQUESTS_CA_BUNDLE"]
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses, for Docker objects of one test."""
    return f"t{uuid.uuid4().hex[:10]}"


def _labelled_objects(client: docker.DockerClient) -> dict[str, str]:
    """Ids and names of the containers and networks (and on a swarm manager the services and
    secrets) labelled as a test's."""
    found = [
        *client.containers.list(all=True, filters={"label": TEST_LABEL}),
        *client.networks.list(filters={"label": TEST_LABEL}),
    ]
    if client.info()["Swarm"].get("ControlAvailable"):
        found += client.services.list(filters={"label": TEST_LABEL})
        found += client.secrets.list(filters={"label": TEST_LABEL})
    return {o.id: str(o.name) for o in found}


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each engine test, no container or network labelled as a test's that it made may
    remain. Other test runs on the same engine (other sessions, parallel CI jobs) are not this
    test's: only objects new since it started count, and of those, when the test used
    `unique_name`, only the ones named after it."""
    if request.node.get_closest_marker("engine") is None:
        yield
        return
    client = request.getfixturevalue("docker_client")
    prefix = request.getfixturevalue("unique_name") if "unique_name" in request.fixturenames else ""
    before = _labelled_objects(client)
    yield
    left = [
        name
        for id_, name in _labelled_objects(client).items()
        if id_ not in before and name.startswith(prefix)
    ]
    assert not left, f"test left Docker objects behind: {left}"


@pytest.fixture
def fresh_deployments(
    docker_client: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator["Deployments"]:
    """This test's own deployments (see tests/engine_stacks.py): everything deployed through
    them is removed afterwards, also when the test failed."""
    from tests.engine_stacks import Deployments  # noqa: PLC0415 (engine tests only)

    deployments = Deployments(docker_client, base_images, tmp_path)
    try:
        yield deployments
    finally:
        deployments.close()


@pytest.fixture
def engine_up(fresh_deployments: "Deployments") -> Up:
    """up(stack, **config): deploy the dev stack's config under `stack` on a free port and
    subnet; removed after the test."""
    return fresh_deployments.up


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures tests measured (`record_property("figure", text)`), after the results."""
    figures = [
        f"{report.nodeid.split('::')[-1]}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for key, value in report.user_properties
        if key == "figure"
    ]
    if figures:
        terminalreporter.section("figures measured")
        for line in figures:
            terminalreporter.write_line(line)
