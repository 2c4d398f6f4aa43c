"""The proxy image with TLS material in its environment: HTTPS (TLS 1.2/1.3 only, HTTP/2), the
plain-HTTP server that redirects, where the key ends up, and refused half-configurations."""

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import contract
from tests.certificates import Authority
from tests.images.stack import Running, Stack, get, host_port, wait_for

pytestmark = pytest.mark.engine


@pytest.fixture
def tls_running(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Running, Path]]:
    """An API and a proxy serving HTTPS with a certificate of a test CA (HSTS on); an indirect
    parameter adds to the proxy's environment."""
    ca = Authority.make()
    chain, key = ca.issue(["localhost", "127.0.0.1"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    stack.create_network()
    api = stack.start_api()
    proxy = stack.start_proxy(
        {
            "API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}",
            "PUBLIC_HOST": "127.0.0.1:8443",
            "TLS_CERTIFICATE": chain,
            "TLS_PRIVATE_KEY": key,
            "HSTS": "on",
            **getattr(request, "param", {}),
        }
    )
    running = Running(stack, api, proxy)
    https = f"https://127.0.0.1:{host_port(proxy, contract.PROXY_HTTPS_PORT)}"
    wait_for(
        lambda: requests.get(f"{https}/", verify=str(ca_file), timeout=5),
        lambda response: response.status_code == 200,
        timeout=30,
        what="GET / over HTTPS",
    )
    yield running, ca_file


def https_port(running: Running) -> int:
    return host_port(running.proxy, contract.PROXY_HTTPS_PORT)


def handshake(port: int, ca_file: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    if version is not None:
        context.minimum_version = context.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_https_offers_http2_and_tls13(tls_running: tuple[Running, Path]) -> None:
    running, ca_file = tls_running
    with handshake(https_port(running), ca_file) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() == "TLSv1.3"


def test_tls12_is_accepted_with_forward_secrecy_only(tls_running: tuple[Running, Path]) -> None:
    running, ca_file = tls_running
    with handshake(https_port(running), ca_file, ssl.TLSVersion.TLSv1_2) as tls:
        name, _, _ = tls.cipher()
        assert name.startswith("ECDHE-"), name


@pytest.mark.parametrize(
    ("tls_running", "policy"),
    [
        ({}, "max-age=63072000"),
        ({"HSTS_INCLUDE_SUBDOMAINS": "on"}, "max-age=63072000; includeSubDomains"),
    ],
    indirect=["tls_running"],
    ids=["default", "include-subdomains"],
)
def test_hsts_covers_subdomains_only_when_asked(
    tls_running: tuple[Running, Path], policy: str
) -> None:
    running, ca_file = tls_running
    response = requests.get(
        f"https://127.0.0.1:{https_port(running)}/", verify=str(ca_file), timeout=5
    )
    assert response.headers["Strict-Transport-Security"] == policy


def test_plain_http_redirects_with_308_and_answers_healthz(
    tls_running: tuple[Running, Path],
) -> None:
    running, _ = tls_running
    plain = f"http://127.0.0.1:{host_port(running.proxy, contract.PROXY_HTTP_PORT)}"
    response = requests.post(f"{plain}/items?a=1&b=2", timeout=5, allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"] == "https://127.0.0.1:8443/items?a=1&b=2"
    # The client's Host never decides where it is sent.
    spoofed = get(f"{plain}/x", headers={"Host": "evil.example"}, allow_redirects=False)
    assert spoofed.headers["Location"] == "https://127.0.0.1:8443/x"
    assert get(f"{plain}{contract.HEALTHZ_PATH}").json() == {"status": "ok"}


def test_the_key_is_nginx_users_alone_and_not_in_its_environment(
    tls_running: tuple[Running, Path],
) -> None:
    running, _ = tls_running
    listing = running.proxy.exec_run(["stat", "-c", "%a %u", "/tmp/nginx/tls/private-key.pem"])
    assert listing.output.decode().split() == ["600", contract.PROXY_USER.split(":")[0]]
    environ = running.proxy.exec_run(["cat", "/proc/1/environ"]).output
    assert b"TLS_PRIVATE_KEY" not in environ and b"PRIVATE KEY" not in environ


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"TLS_CERTIFICATE": "x"}, "TLS_CERTIFICATE and TLS_PRIVATE_KEY go together"),
        ({"HSTS": "on"}, "HSTS=on needs HTTPS"),
        ({"HSTS": "yes"}, "HSTS='yes' is not on or off"),
        ({"HSTS_INCLUDE_SUBDOMAINS": "on"}, "HSTS_INCLUDE_SUBDOMAINS=on needs HSTS=on"),
        ({"HSTS_INCLUDE_SUBDOMAINS": "1"}, "HSTS_INCLUDE_SUBDOMAINS='1' is not on or off"),
    ],
)
def test_half_configured_tls_is_refused(
    stack: Stack, environment: dict[str, str], message: str
) -> None:
    proxy = stack.start_proxy({"API_UPSTREAM": "api:8000", **environment})
    assert proxy.wait(timeout=30)["StatusCode"] == 64
    assert message in proxy.logs().decode()


def test_the_post_quantum_hybrid_group_comes_first_on_openssl_35(
    tls_running: tuple[Running, Path],
) -> None:
    """The base image's OpenSSL (3.5) has X25519MLKEM768: the proxy keeps it, first, and a client
    that offers it alone gets it (openssl s_client inside the proxy's container)."""
    running, _ = tls_running
    logs = running.proxy.logs(stdout=False, stderr=True).decode()
    chosen = "proxy: TLS key exchange groups X25519MLKEM768:X25519:prime256v1:secp384r1: all"
    assert chosen in logs, logs
    server = f"127.0.0.1:{contract.PROXY_HTTPS_PORT}"
    client = f"openssl s_client -brief -groups X25519MLKEM768 -connect {server} </dev/null 2>&1"
    result = running.proxy.exec_run(["sh", "-c", client])
    output = result.output.decode()
    assert "Negotiated TLS1.3 group: X25519MLKEM768" in output, output
