"""The proxy image on an nginx linked to OpenSSL 3.0 (Debian bookworm's), which lacks the
post-quantum hybrid group X25519MLKEM768: it starts and serves HTTPS with the groups that OpenSSL
offers, and says which it chose."""

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.models.containers import Container

import contract
from tests.certificates import Authority
from tests.images.openssl30 import bookworm_nginx
from tests.images.stack import REPO_ROOT, Stack, build_image, host_port, remove_image, wait_for

pytestmark = pytest.mark.engine

# nginx 1.22 (bookworm's) predates the `http2` directive (1.25.1): the one line of tls.conf this
# test leaves out. The rest of the proxy's configuration and its entrypoint are the image's own.
HTTP2_LINE = "http2 on;\n"


@pytest.fixture(scope="module")
def openssl30_proxy(docker_client: docker.DockerClient) -> Iterator[str]:
    """The proxy image built from proxy/ on the bookworm base."""
    base = bookworm_nginx(docker_client)
    tag = build_image(docker_client, REPO_ROOT / contract.PROXY_CONTEXT, base).tag
    try:
        yield tag
    finally:
        remove_image(docker_client, tag, prune=True)


def serving(proxy: Container, url: str, ca_file: Path) -> requests.Response:
    proxy.reload()
    if proxy.status == "exited":
        pytest.fail(f"the proxy exited: {proxy.logs().decode()[-2000:]}")
    return requests.get(url, verify=str(ca_file), timeout=5)


def test_proxy_on_openssl30_serves_https_without_the_hybrid_group(
    stack: Stack, openssl30_proxy: str, tmp_path: Path
) -> None:
    ca = Authority.make()
    chain, key = ca.issue(["127.0.0.1"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    tls_conf = (REPO_ROOT / contract.PROXY_CONTEXT / "tls.conf").read_text()
    assert HTTP2_LINE in tls_conf
    older_tls_conf = tmp_path / "tls.conf"
    older_tls_conf.write_text(tls_conf.replace(HTTP2_LINE, ""))
    proxy = stack.start_proxy(
        {
            # An address, not a name: nginx 1.22 can't follow a name (`resolve`). /healthz is
            # nginx's own answer; no API is needed.
            "API_UPSTREAM": f"127.0.0.1:{contract.API_PORT}",
            "TLS_CERTIFICATE": chain,
            "TLS_PRIVATE_KEY": key,
        },
        image=openssl30_proxy,
        volumes={str(older_tls_conf): {"bind": "/etc/nginx/tls.conf", "mode": "ro"}},
    )
    port = host_port(proxy, contract.PROXY_HTTPS_PORT)
    url = f"https://127.0.0.1:{port}{contract.HEALTHZ_PATH}"
    wait_for(
        lambda: serving(proxy, url, ca_file),
        lambda response: response.status_code == 200,
        timeout=30,
        what=f"GET {contract.HEALTHZ_PATH} over HTTPS from the proxy on OpenSSL 3.0",
    )
    logs = proxy.logs(stdout=False, stderr=True).decode()
    assert (
        "proxy: TLS key exchange groups X25519:prime256v1:secp384r1; left out, as nginx with"
        " OpenSSL 3.0." in logs
    ), logs
    assert ": X25519MLKEM768 (X25519MLKEM768 needs OpenSSL 3.5 or later)" in logs, logs
