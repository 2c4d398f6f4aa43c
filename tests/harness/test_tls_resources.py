"""The harness's pulumi-tls resources (real keys and certificates, the provider's semantics)
and its state file's secrets (encrypted, as Pulumi's passphrase manager does)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from engine_harness import state_secrets, tls_resources
from engine_harness.docker_mocks import Record, load_state, save_state

pytestmark = pytest.mark.unit


def make(typ: str, **inputs: object) -> dict:
    return tls_resources.create(typ, "t", dict(inputs))[1]


def test_a_ca_and_a_certificate_from_it_verify() -> None:
    ca_key = make(tls_resources.PRIVATE_KEY, algorithm="ECDSA", ecdsaCurve="P256")
    assert ca_key["privateKeyPem"].startswith("-----BEGIN EC PRIVATE KEY-----")  # SEC1
    assert ca_key["privateKeyPemPkcs8"].startswith("-----BEGIN PRIVATE KEY-----")
    ca = make(
        tls_resources.SELF_SIGNED_CERT,
        privateKeyPem=ca_key["privateKeyPem"],
        subject={"commonName": "t CA"},
        isCaCertificate=True,
        setSubjectKeyId=True,
        allowedUses=["cert_signing", "crl_signing"],
        validityPeriodHours=24,
    )
    key = make(tls_resources.PRIVATE_KEY, algorithm="ECDSA", ecdsaCurve="P256")
    request = make(
        tls_resources.CERT_REQUEST,
        privateKeyPem=key["privateKeyPem"],
        subject={"commonName": "localhost"},
        dnsNames=["localhost"],
        ipAddresses=["127.0.0.1"],
    )
    issued = make(
        tls_resources.LOCALLY_SIGNED_CERT,
        certRequestPem=request["certRequestPem"],
        caPrivateKeyPem=ca_key["privateKeyPem"],
        caCertPem=ca["certPem"],
        allowedUses=["digital_signature", "server_auth"],
        validityPeriodHours=24,
    )
    authority = x509.load_pem_x509_certificate(ca["certPem"].encode())
    certificate = x509.load_pem_x509_certificate(issued["certPem"].encode())
    certificate.verify_directly_issued_by(authority)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {"localhost", "127.0.0.1"}
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    # The CA's subject key id is the certificate's authority key id.
    assert certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_renewal_is_due_within_the_early_renewal_hours() -> None:
    end = datetime(2030, 1, 31, tzinfo=UTC)
    outputs = {"validityEndTime": "2030-01-31T00:00:00Z", "earlyRenewalHours": 24 * 30}
    assert not tls_resources.ready_for_renewal(outputs, end - timedelta(days=31))
    assert tls_resources.ready_for_renewal(outputs, end - timedelta(days=29))


def test_inputs_it_does_not_apply_are_refused() -> None:
    with pytest.raises(ValueError, match=r"declared inputs \['uris'\] are not applied"):
        tls_resources.create(tls_resources.CERT_REQUEST, "t", {"privateKeyPem": "", "uris": []})


def test_secrets_are_encrypted_in_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    key = "-----BEGIN EC PRIVATE KEY-----\nsecret material\n-----END EC PRIVATE KEY-----"
    record = Record(
        "docker:index/container:Container",
        "proxy",
        {"envs": ["A=1", f"TLS_PRIVATE_KEY={key}"], "image": "x"},
        "id",
        {"envs": ["A=1", f"TLS_PRIVATE_KEY={key}"], "image": "x"},
        secret=["envs"],
    )
    save_state(path, [record])
    assert "secret material" not in path.read_text()
    assert state_secrets.SECRET_SIGNATURE in path.read_text()
    (loaded,) = load_state(path)
    assert loaded.inputs == record.inputs and loaded.outputs == record.outputs
