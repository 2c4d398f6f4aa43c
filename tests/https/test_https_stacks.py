"""HTTPS on the real engine: the default stack and one with a provided certificate, each
scanned by testssl.sh; the provided certificate rotated under a stream of requests."""

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

import contract
from engine_harness.free_resources import free_port
from engine_harness.request_stream import RequestStream
from tests.certificates import Authority
from tests.conftest import Up
from tests.engine_stacks import (
    Deployments,
    Endpoint,
    EngineStack,
    connect,
    new_stack_name,
    port_of,
    smoke,
    trust,
)
from tests.https.conftest import Finding, Scan

pytestmark = pytest.mark.engine

SECRET_KEY = frozenset({"tlsPrivateKey"})
# pytest's record_property: ("figure", text) is printed at the end of the run.
Record = Callable[[str, object], None]
# A certificate from a CA of the stack's own carries no revocation service (pulumi-tls can't
# add one, and a per-stack CA runs none): testssl rates that HIGH. The only finding allowed
# above MEDIUM, and only for self-signed stacks; the provided stack below has none at all.
SELF_SIGNED_ALLOWED = {"cert_revocation"}


def finding(findings: list[Finding], id_: str) -> str:
    matches = [f["finding"] for f in findings if f["id"] == id_]
    assert matches, f"testssl reported no {id_}"
    return matches[0]


def assert_sound(findings: list[Finding], allowed: set[str]) -> None:
    """Old protocols refused, TLS 1.2 and 1.3 offered, forward secrecy, h2; nothing rated
    HIGH or CRITICAL beyond `allowed`; the scan itself complete."""
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert finding(findings, old) == "not offered", old
    for current in ("TLS1_2", "TLS1_3"):
        assert finding(findings, current).startswith("offered"), current
    assert "offered" in finding(findings, "FS")
    assert "h2" in finding(findings, "ALPN_HTTP2")
    severe = [f for f in findings if f["severity"] in {"HIGH", "CRITICAL"}]
    assert {f["id"] for f in severe} <= allowed, severe
    failed = [f for f in findings if f["severity"] in {"FATAL"}]
    assert not failed, failed


def served_serial(stack: EngineStack, ca_file: Path) -> int:
    """The serial number of the certificate the stack's proxy serves, verified by `ca_file`."""
    with connect(Endpoint(port_of(stack).port, ca_file)) as tls:
        assert isinstance(tls, ssl.SSLSocket)
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_default_stack_serves_sound_https(
    engine_up: Up, testssl: Scan, record_property: Record
) -> None:
    stack = engine_up(new_stack_name(), httpRedirectPort="0")
    assert stack.url.startswith("https://")
    assert stack.ca_file is not None
    result = smoke(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    # The keys are secrets in the harness's state, as in Pulumi's: never in plain text.
    assert "PRIVATE KEY" not in stack.state_file.read_text()

    findings = testssl(port_of(stack).port, stack.ca_file, "self-signed")
    assert_sound(findings, SELF_SIGNED_ALLOWED)
    assert finding(findings, "cert_chain_of_trust").startswith("passed")
    record_property(
        "figure", f"testssl: {len(findings)} findings, none HIGH beyond {SELF_SIGNED_ALLOWED}"
    )


@pytest.fixture
def authority(tmp_path: Path) -> tuple[Authority, Path]:
    ca = Authority.make("Provided Test CA")
    path = tmp_path / "provided-ca.pem"
    path.write_text(ca.pem)
    trust(ca.pem)
    return ca, path


def test_a_provided_certificate_is_served_scanned_and_rotated(
    fresh_deployments: Deployments,
    authority: tuple[Authority, Path],
    testssl: Scan,
    record_property: Record,
) -> None:
    ca, ca_file = authority
    name = new_stack_name()
    chain, key = ca.issue(["localhost", "127.0.0.1"], revocation=True)
    stack = fresh_deployments.up(
        name,
        secrets=SECRET_KEY,
        tlsMode="provided",
        tlsCertificate=chain,
        tlsPrivateKey=key,
        httpRedirectPort=str(free_port()),
    )
    assert contract.EXPORT_CA_CERTIFICATE not in stack.exports
    result = smoke(stack, ca_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redirects to HTTPS (308)" in result.stdout

    findings = testssl(port_of(stack).port, ca_file, "provided")
    assert_sound(findings, set())
    assert "63072000 seconds" in finding(findings, "HSTS_time")
    served = served_serial(stack, ca_file)

    # Rotation: a new certificate and key in config reach the proxy on the next `up`.
    new_chain, new_key = ca.issue(["localhost", "127.0.0.1"], revocation=True)
    with RequestStream(stack.url) as stream:
        rotated = fresh_deployments.up(name, tlsCertificate=new_chain, tlsPrivateKey=new_key)
        stream.wait_for_successes(len(stream.tally.results) + 200)
    gap = stream.tally.outage()
    record_property(
        "figure", f"certificate rotation: no answer for {gap:.2f} s; {stream.tally.summary()}"
    )
    now_served = served_serial(rotated, ca_file)
    assert now_served != served
    assert x509.load_pem_x509_certificate(new_chain.encode()).serial_number == now_served
    assert f"{stack.name}-proxy" in " ".join(rotated.summary.replaced)
    assert 0 < gap < 10, stream.tally.summary()
    assert all(r.outcome == "200" for r in stream.tally.results[-200:])
