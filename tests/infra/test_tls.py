"""HTTPS at the proxy, under the mock runtime: the stack's own CA and certificate, a provided
certificate, plain HTTP; and every bad TLS config refused before anything is created."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import contract
from settings import ConfigError
from tests.certificates import Authority, key_pem
from tests.infra.conftest import Deploy, Deployment

pytestmark = pytest.mark.unit

SECRET_KEY = frozenset({"tlsPrivateKey"})


def env(deployment: Deployment, name: str) -> str | None:
    for entry in deployment.proxy.inputs["envs"]:
        key, _, value = entry.partition("=")
        if key == name:
            return value
    return None


def served_certificate(deployment: Deployment) -> x509.Certificate:
    pem = env(deployment, "TLS_CERTIFICATE")
    assert pem is not None, "the proxy gets no certificate"
    return x509.load_pem_x509_certificate(pem.encode())


def alternative_names(certificate: x509.Certificate) -> set[str]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in names}


def test_default_is_https_with_a_ca_of_the_stack_own(deploy: Deploy) -> None:
    deployment = deploy()
    ca = x509.load_pem_x509_certificate(deployment.exports[contract.EXPORT_CA_CERTIFICATE].encode())
    served = served_certificate(deployment)
    served.verify_directly_issued_by(ca)
    assert alternative_names(served) == {"localhost", "127.0.0.1"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not served.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(served.public_key(), ec.EllipticCurvePublicKey)
    assert deployment.exports[contract.EXPORT_URL].startswith("https://")
    assert env(deployment, "HSTS") == "off"


def test_the_private_key_is_a_secret_of_the_proxy(deploy: Deploy) -> None:
    deployment = deploy()
    assert "envs" in deployment.proxy.secret
    key = env(deployment, "TLS_PRIVATE_KEY")
    assert key is not None and "PRIVATE KEY" in key
    for container in deployment.api_containers:
        assert not any(e.startswith("TLS_") for e in container.inputs["envs"]), container.name


def test_configured_host_names_are_in_the_certificate_and_the_url(deploy: Deploy) -> None:
    deployment = deploy(tlsHostNames="api.example.com, 10.1.2.3", proxyBindAddress="0.0.0.0")
    assert alternative_names(served_certificate(deployment)) == {"api.example.com", "10.1.2.3"}
    # The bind address (all interfaces) is not a name clients use: the first host name is.
    assert deployment.exports[contract.EXPORT_URL] == "https://api.example.com:8080"


def test_provided_certificate_reaches_the_proxy_with_hsts(deploy: Deploy) -> None:
    chain, key = Authority.make().issue(["localhost", "127.0.0.1"])
    deployment = deploy(
        tlsMode="provided", tlsCertificate=chain, tlsPrivateKey=key, secrets=SECRET_KEY
    )
    assert env(deployment, "TLS_CERTIFICATE") == chain.strip()
    assert env(deployment, "TLS_PRIVATE_KEY") == key.strip()
    assert env(deployment, "HSTS") == "on"
    assert env(deployment, "HSTS_INCLUDE_SUBDOMAINS") == "off"
    assert "envs" in deployment.proxy.secret
    assert contract.EXPORT_CA_CERTIFICATE not in deployment.exports
    assert not deployment.mocks.of_type("PrivateKey")


def test_hsts_covers_subdomains_only_when_configured(deploy: Deploy) -> None:
    chain, key = Authority.make().issue(["localhost", "127.0.0.1"])
    deployment = deploy(secrets=SECRET_KEY, **provided(chain, key, hstsIncludeSubDomains="true"))
    assert env(deployment, "HSTS") == "on"
    assert env(deployment, "HSTS_INCLUDE_SUBDOMAINS") == "on"


def test_off_serves_plain_http_with_no_tls_material(deploy: Deploy) -> None:
    deployment = deploy(tlsMode="off")
    assert env(deployment, "TLS_CERTIFICATE") is None and env(deployment, "TLS_PRIVATE_KEY") is None
    assert not deployment.mocks.of_type("PrivateKey")
    assert not deployment.mocks.of_type("Cert")
    assert contract.EXPORT_CA_CERTIFICATE not in deployment.exports


def test_redirect_port_publishes_the_plain_http_server(deploy: Deploy) -> None:
    deployment = deploy(httpRedirectPort="8081")
    ports = {p["internal"]: p for p in deployment.proxy.inputs["ports"]}
    assert ports[contract.PROXY_HTTPS_PORT]["external"] == 8080
    assert ports[contract.PROXY_HTTP_PORT]["external"] == 8081
    assert ports[contract.PROXY_HTTP_PORT]["ip"] == "127.0.0.1"
    assert deployment.exports[contract.EXPORT_HTTP_REDIRECT_URL] == "http://127.0.0.1:8081"


def provided(chain: str, key: str, **config: str) -> dict[str, str]:
    return {"tlsMode": "provided", "tlsCertificate": chain, "tlsPrivateKey": key, **config}


CA = Authority.make()
GOOD_CHAIN, GOOD_KEY = CA.issue(["localhost", "127.0.0.1"])
LONG_AGO = datetime.now(UTC) - timedelta(days=30)


@pytest.mark.parametrize(
    ("config", "secrets", "expected"),
    [
        ({"tlsMode": "on"}, SECRET_KEY, "tlsMode: 'on' is not one of self-signed, provided, off"),
        ({"tlsHostNames": "bad name!"}, SECRET_KEY, "tlsHostNames: 'bad name!' is not"),
        ({"tlsHostNames": " , "}, SECRET_KEY, "tlsHostNames: "),
        (
            {"tlsMode": "off", "httpRedirectPort": "8081"},
            SECRET_KEY,
            "httpRedirectPort: a redirect",
        ),
        ({"httpRedirectPort": "8080"}, SECRET_KEY, "httpRedirectPort: 8080 is proxyPort too"),
        ({"tlsCertificate": GOOD_CHAIN}, SECRET_KEY, "tlsCertificate: set, but tlsMode"),
        (
            {"hstsIncludeSubDomains": "true"},
            SECRET_KEY,
            "hstsIncludeSubDomains: HSTS is sent with tlsMode provided only",
        ),
        (
            {"tlsMode": "off", "hstsIncludeSubDomains": "true"},
            SECRET_KEY,
            "hstsIncludeSubDomains: HSTS is sent with tlsMode provided only",
        ),
        ({"tlsMode": "provided", "tlsPrivateKey": GOOD_KEY}, SECRET_KEY, "tlsCertificate: missing"),
        (
            {"tlsMode": "provided", "tlsCertificate": GOOD_CHAIN},
            SECRET_KEY,
            "tlsPrivateKey: missing",
        ),
        (provided(GOOD_CHAIN, GOOD_KEY), frozenset(), "tlsPrivateKey: not a secret"),
        (
            provided("not a pem", GOOD_KEY),
            SECRET_KEY,
            "tlsCertificate: its value (a secret) is not a PEM certificate chain",
        ),
        (
            provided(GOOD_CHAIN, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            SECRET_KEY,
            "tlsPrivateKey: not a PEM private key",
        ),
        (
            provided(GOOD_CHAIN, key_pem(ec.generate_private_key(ec.SECP256R1()))),
            SECRET_KEY,
            "tlsPrivateKey: does not match the certificate in tlsCertificate",
        ),
        (
            provided(
                *CA.issue(
                    ["localhost", "127.0.0.1"], valid_from=LONG_AGO, valid_for=timedelta(days=1)
                )
            ),
            SECRET_KEY,
            "tlsCertificate: the certificate expired on",
        ),
        (
            provided(
                *CA.issue(
                    ["localhost", "127.0.0.1"], valid_from=datetime.now(UTC) + timedelta(days=2)
                )
            ),
            SECRET_KEY,
            "tlsCertificate: the certificate is not valid before",
        ),
        (
            provided(*CA.issue(["api.example.com"])),
            SECRET_KEY,
            "tlsCertificate: the certificate is not valid for localhost, 127.0.0.1",
        ),
        (
            provided(*CA.issue(["*.example.com"]), tlsHostNames="a.b.example.com"),
            SECRET_KEY,
            "not valid for a.b.example.com",
        ),
        (
            provided(
                *CA.issue(["localhost", "127.0.0.1"], key=rsa.generate_private_key(65537, 1024))  # noqa: S505 (refused)
            ),
            SECRET_KEY,
            "tlsPrivateKey: an RSA key of 1024 bits",
        ),
    ],
)
def test_bad_tls_config_is_refused_naming_the_key(
    deploy: Deploy, config: dict[str, str], secrets: frozenset[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        deploy(secrets=secrets, **config)
    assert expected in str(raised.value), str(raised.value)
    assert "nothing was created" in str(raised.value)


def test_a_wildcard_covers_one_label(deploy: Deploy) -> None:
    chain, key = CA.issue(["*.example.com"])
    deployment = deploy(secrets=SECRET_KEY, **provided(chain, key, tlsHostNames="api.example.com"))
    assert env(deployment, "TLS_CERTIFICATE") == chain.strip()
