"""The API image on PyPy (apiRuntime pypy), run as the stack runs it: it serves the same answers
behind the proxy, healthy, non-root on a read-only root, and really on PyPy."""

from collections.abc import Iterator
from importlib import metadata

import docker
import pytest

import contract
from instance_specs import API_RUNTIMES
from tests.images import stack as images
from tests.images.stack import Running, Stack, get, wait_for

pytestmark = pytest.mark.engine

PYPY = API_RUNTIMES["pypy"]


@pytest.fixture(scope="module")
def pypy_api(docker_client: docker.DockerClient, base_images: dict[str, str]) -> Iterator[str]:
    built = images.build_image(
        docker_client,
        images.REPO_ROOT / contract.API_CONTEXT,
        base_images["pypy"],
        PYTHON=PYPY.python,
        SOURCE_BUILDS=PYPY.source_builds,
    )
    yield built.tag
    images.remove_image(docker_client, built.tag, prune=False)


@pytest.fixture
def on_pypy(stack: Stack, pypy_api: str) -> Running:
    stack.create_network()
    warm = {"GUNICORN_WARMUP_REQUESTS": str(PYPY.warmup_requests)}
    api = stack.start_api(image=pypy_api, environment=warm, mem_limit="768m")
    proxy = stack.start_proxy()
    return Running(stack, api, proxy).serving("a stack with its API on PyPy")


def test_pypy_serves_the_same_answers_through_the_proxy(on_pypy: Running) -> None:
    response = get(f"{on_pypy.url}/")
    assert response.json() == {"message": "Hello, Being!"}
    assert get(f"{on_pypy.url}/swagger").json()["swagger"] == "2.0"


def test_the_api_runs_on_pypy_as_a_non_root_user(on_pypy: Running) -> None:
    implementation = on_pypy.api.exec_run(
        ["python", "-c", "import platform; print(platform.python_implementation())"]
    )
    assert implementation.output.decode().strip() == "PyPy"
    assert on_pypy.api.exec_run(["id", "-u"]).output.decode().strip() == "10001"


def test_the_pypy_api_becomes_healthy(on_pypy: Running) -> None:
    def health() -> str:
        on_pypy.api.reload()
        return str(on_pypy.api.attrs["State"]["Health"]["Status"])

    wait_for(health, lambda status: status == "healthy", timeout=60, what="PyPy API healthy")


# The service's own tests, on PyPy: its requirements (as the image installs them) and the test
# tools in a virtualenv of the PyPy base image, the repository mounted read-only.
SERVICE_TESTS = """
set -e
pypy3 -m venv /tmp/venv
/tmp/venv/bin/pip install --quiet --only-binary=:all: --no-binary={source_builds} \
    -r service/requirements.txt {tools}
/tmp/venv/bin/python -m pytest -p no:cacheprovider --confcutdir=tests/service -o addopts= \
    -q tests/service
"""
TEST_TOOLS = ("pytest", "requests", "docker")


def test_the_service_tests_pass_on_pypy(
    docker_client: docker.DockerClient, base_images: dict[str, str]
) -> None:
    # The versions the tests run with here.
    tools = " ".join(f"{tool}=={metadata.version(tool)}" for tool in TEST_TOOLS)
    script = SERVICE_TESTS.format(source_builds=PYPY.source_builds, tools=tools)
    output = docker_client.containers.run(
        base_images["pypy"],
        ["sh", "-c", script],
        volumes={str(images.REPO_ROOT): {"bind": "/src", "mode": "ro"}},
        working_dir="/src",
        environment={"PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"},
        user="10001:10001",
        remove=True,
        stderr=True,
    ).decode()
    assert " passed" in output and "failed" not in output and "error" not in output, output
