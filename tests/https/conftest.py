"""testssl.sh in a container of its own, built once per session from Debian trixie's package."""

import json
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO_ROOT, TEST_LABEL

IMAGE = "pulumi-flask-rebar-test/testssl:trixie"
# Where the scans' reports go (ignored by git): kept after the run, never committed.
REPORTS = REPO_ROOT / ".test-output" / "testssl"
SCAN_TIMEOUT = 300

# One finding of testssl's JSON report.
Finding = dict[str, str]
Scan = Callable[[int, Path, str], list[Finding]]


@pytest.fixture(scope="session")
def testssl_image(docker_client: docker.DockerClient, base_images: dict[str, str]) -> str:
    docker_client.images.build(
        path=str(Path(__file__).parent),
        dockerfile="Dockerfile.testssl",
        buildargs={"BASE_IMAGE": base_images["api"]},
        tag=IMAGE,
        rm=True,
    )
    return IMAGE


@pytest.fixture
def testssl(docker_client: docker.DockerClient, testssl_image: str) -> Scan:
    """scan(port, ca_file, report_name): testssl.sh's full default scan of https://127.0.0.1:port
    on this host's loopback, trusting `ca_file`; its JSON findings (the report is kept)."""

    def scan(port: int, ca_file: Path, name: str) -> list[Finding]:
        REPORTS.mkdir(parents=True, exist_ok=True)
        report = REPORTS / f"{name}.json"
        report.unlink(missing_ok=True)
        (REPORTS / f"{name}-ca.pem").write_text(ca_file.read_text())
        container = docker_client.containers.run(
            testssl_image,
            [
                *["--quiet", "--color", "0", "--warnings", "batch"],
                # No DNS at all: the scan goes to this address, and nowhere else.
                *["--ip", "127.0.0.1", "--nodns", "none"],
                *["--add-ca", f"/reports/{name}-ca.pem", "--jsonfile", f"/reports/{name}.json"],
                f"https://127.0.0.1:{port}/",
            ],
            network_mode="host",
            volumes={str(REPORTS): {"bind": "/reports", "mode": "rw"}},
            labels={TEST_LABEL: "1"},
            detach=True,
        )
        try:
            status = container.wait(timeout=SCAN_TIMEOUT)["StatusCode"]
            output = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        assert report.is_file(), f"testssl wrote no report (exit {status}):\n{output[-3000:]}"
        return list(json.loads(report.read_text()))

    return scan
