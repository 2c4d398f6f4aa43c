"""A proxy base image whose nginx is linked to OpenSSL 3.0: Debian bookworm's nginx 1.22 and
libssl3 (the offline bases are trixie's, with OpenSSL 3.5). Made once with debootstrap, as
base-images/build.sh makes the offline bases, and kept under its name as the next run's cache.

Run with the engine lock held (the import uses the engine)."""

import os
import shutil
import subprocess
import tempfile

import docker
import docker.errors
import pytest

# A registry part under the reserved .invalid domain: the name resolves to no registry, so a
# missing image is made here, never pulled.
BOOKWORM_NGINX = "test.invalid/nginx-openssl30:bookworm"
# debootstrap of a minimal bookworm took about 30 s here.
DEBOOTSTRAP_TIMEOUT = 900


def bookworm_nginx(client: docker.DockerClient) -> str:
    """BOOKWORM_NGINX, made first if the engine doesn't have it."""
    try:
        client.images.get(BOOKWORM_NGINX)
    except docker.errors.ImageNotFound:
        _make(BOOKWORM_NGINX)
    return BOOKWORM_NGINX


def _make(name: str) -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.fail(f"making {name} needs root and debootstrap (apt-get install debootstrap)")
    mirror = [os.environ["DEBIAN_MIRROR"]] if os.environ.get("DEBIAN_MIRROR") else []
    with tempfile.TemporaryDirectory(prefix="bookworm-nginx.") as root:
        made = subprocess.run(
            [  # noqa: S607
                "debootstrap",
                "--variant=minbase",
                "--include=nginx,openssl",
                "bookworm",
                root,
                *mirror,
            ],
            capture_output=True,
            text=True,
            timeout=DEBOOTSTRAP_TIMEOUT,
            check=False,
        )
        if made.returncode != 0:
            output = made.stdout[-3000:] + made.stderr[-3000:]
            pytest.fail(f"debootstrap of {name} failed:\n{output}")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)  # noqa: S607
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["bash"]', "-", name],  # noqa: S607
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if tar.returncode != 0 or imported.returncode != 0:
            pytest.fail(f"importing {name} failed: {imported.stderr[-2000:]}")
