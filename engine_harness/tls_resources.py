"""pulumi-tls resources made with the `cryptography` package, as the provider makes them.

pulumi-tls 5.x bridges hashicorp/terraform-provider-tls; what follows is read from its
`internal/provider` (resource_private_key.go, common_key.go, resource_self_signed_cert.go,
resource_cert_request.go, resource_locally_signed_cert.go, common_cert.go):
- Every input of these resources forces a replacement (no Update): a change makes new ones.
- Keys: ECDSA on the named curve (the provider's default curve is P224, which clients refuse:
  the program names P256), RSA (2048 bits by default) or ED25519. `private_key_pem` is PKCS#1
  for RSA, SEC1 for ECDSA, PKCS#8 for ED25519; `private_key_pem_pkcs8` is PKCS#8 for all; the
  private key outputs are sensitive, so Pulumi keeps them secret.
- Certificates: a random 128-bit serial number, valid from now for `validity_period_hours`,
  signed with SHA-256 (ECDSA or RSA by the signer's key), the subject, SANs, key usages and
  basic constraints from the inputs; `set_subject_key_id` adds the SHA-1 of the public key; a
  locally signed certificate gets its CA's subject key id as authority key id.
- Renewal: a certificate is `ready_for_renewal` once now is within `early_renewal_hours` of its
  end; the provider's plan then replaces it.
An input the harness does not apply is refused, as for the Docker resources.
"""

import hashlib
import ipaddress
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PRIVATE_KEY: Final = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT: Final = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST: Final = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED_CERT: Final = "tls:index/locallySignedCert:LocallySignedCert"

CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "P224": ec.SECP224R1(),
    "P256": ec.SECP256R1(),
    "P384": ec.SECP384R1(),
    "P521": ec.SECP521R1(),
}
SUBJECT_FIELDS: Final = {
    "commonName": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
}
# allowed_uses values: X.509 key usages (keyword of cryptography's KeyUsage) and extended ones.
KEY_USAGES: Final = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}
EXTENDED_USAGES: Final = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
}
CERT_INPUTS: Final = {
    "validityPeriodHours",
    "allowedUses",
    "earlyRenewalHours",
    "isCaCertificate",
    "setSubjectKeyId",
}
NAME_INPUTS: Final = {"subject", "dnsNames", "ipAddresses"}
# What each type takes, and which of its outputs are sensitive (secret in Pulumi's state).
INPUTS: Final = {
    PRIVATE_KEY: {"algorithm", "ecdsaCurve", "rsaBits"},
    SELF_SIGNED_CERT: {"privateKeyPem", *NAME_INPUTS, *CERT_INPUTS},
    CERT_REQUEST: {"privateKeyPem", *NAME_INPUTS},
    LOCALLY_SIGNED_CERT: {"certRequestPem", "caPrivateKeyPem", "caCertPem", *CERT_INPUTS},
}
SECRET_OUTPUTS: Final = {
    PRIVATE_KEY: {"privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"},
    SELF_SIGNED_CERT: {"privateKeyPem"},
    CERT_REQUEST: {"privateKeyPem"},
    LOCALLY_SIGNED_CERT: {"caPrivateKeyPem"},
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _pem(data: bytes) -> str:
    return data.decode()


def private_key(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm = inputs["algorithm"]
    key: PrivateKey
    if algorithm == "ECDSA":
        key = ec.generate_private_key(CURVES[inputs.get("ecdsaCurve", "P224")])
        legacy = serialization.PrivateFormat.TraditionalOpenSSL  # SEC1
    elif algorithm == "RSA":
        key = rsa.generate_private_key(65537, int(inputs.get("rsaBits", 2048)))
        legacy = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        legacy = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f"algorithm {algorithm!r} is not RSA, ECDSA or ED25519")
    encoding, plain = serialization.Encoding.PEM, serialization.NoEncryption()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    outputs = {
        **inputs,
        "privateKeyPem": _pem(key.private_bytes(encoding, legacy, plain)),
        "privateKeyPemPkcs8": _pem(
            key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, plain)
        ),
        "publicKeyPem": _pem(
            key.public_key().public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)
        ),
        "publicKeyFingerprintSha256": "SHA256:" + hashlib.sha256(public_der).hexdigest(),
    }
    # The provider's id: the SHA-1 of the public key (hashForState).
    return hashlib.sha1(public_der).hexdigest(), outputs  # noqa: S324 (an id, as the provider's)


def _load_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    )
    return key


def _subject(inputs: dict[str, Any]) -> x509.Name:
    subject = inputs.get("subject") or {}
    unknown = set(subject) - set(SUBJECT_FIELDS)
    if unknown:
        raise ValueError(f"subject fields {sorted(unknown)} are not applied")
    return x509.Name([x509.NameAttribute(SUBJECT_FIELDS[k], str(v)) for k, v in subject.items()])


def _alternative_names(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    return [
        *(x509.DNSName(name) for name in inputs.get("dnsNames") or []),
        *(x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []),
    ]


def cert_request(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs))
    if names := _alternative_names(inputs):
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    pem = _pem(builder.sign(key, _digest(key)).public_bytes(serialization.Encoding.PEM))
    return hashlib.sha1(pem.encode()).hexdigest(), {**inputs, "certRequestPem": pem}  # noqa: S324


def _digest(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _certificate(
    inputs: dict[str, Any],
    subject: x509.Name,
    public_key: Any,
    names: list[x509.GeneralName],
    issuer: x509.Name,
    signer: PrivateKey,
    authority: x509.Certificate | None,
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    usages = set(inputs.get("allowedUses") or [])
    unknown = usages - set(KEY_USAGES) - set(EXTENDED_USAGES)
    if unknown:
        raise ValueError(f"allowedUses {sorted(unknown)} are not applied")
    end = now + timedelta(hours=float(inputs["validityPeriodHours"]))
    serial = secrets.randbits(128)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")), path_length=None),
            critical=True,
        )
    )
    flags = {
        keyword: any(KEY_USAGES.get(u) == keyword for u in usages)
        for keyword in KEY_USAGES.values()
    }
    if any(flags.values()):
        builder = builder.add_extension(
            x509.KeyUsage(encipher_only=False, decipher_only=False, **flags), critical=True
        )
    if extended := [EXTENDED_USAGES[u] for u in sorted(usages) if u in EXTENDED_USAGES]:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    if authority is not None:
        try:
            ski = authority.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        except x509.ExtensionNotFound:
            pass
    pem = _pem(builder.sign(signer, _digest(signer)).public_bytes(serialization.Encoding.PEM))
    return str(serial), {
        **inputs,
        "certPem": pem,
        "validityStartTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readyForRenewal": False,
    }


def self_signed_cert(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _load_key(inputs["privateKeyPem"])
    subject = _subject(inputs)
    return _certificate(
        inputs, subject, key.public_key(), _alternative_names(inputs), subject, key, None, _now()
    )


def locally_signed_cert(inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    if not request.is_signature_valid:
        raise ValueError("certRequestPem: the request's signature is not valid")
    ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    try:
        names = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    signer = _load_key(inputs["caPrivateKeyPem"])
    return _certificate(
        inputs, request.subject, request.public_key(), names, ca.subject, signer, ca, _now()
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def ready_for_renewal(outputs: dict[str, Any], now: datetime | None = None) -> bool:
    """The provider's plan: within `earlyRenewalHours` of the certificate's end (or past it)."""
    if "validityEndTime" not in outputs:
        return False
    end = datetime.strptime(outputs["validityEndTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    early = timedelta(hours=float(outputs.get("earlyRenewalHours") or 0))
    return (now or datetime.now(UTC)) >= end - early


CREATE: Final[dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]]] = {
    PRIVATE_KEY: private_key,
    SELF_SIGNED_CERT: self_signed_cert,
    CERT_REQUEST: cert_request,
    LOCALLY_SIGNED_CERT: locally_signed_cert,
}


def create(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Make the resource; ValueError names an input the harness does not apply."""
    unknown = sorted(set(inputs) - INPUTS[typ])
    if unknown:
        raise ValueError(
            f"{typ} {name!r}: declared inputs {unknown} are not applied by the engine harness;"
            " teach engine_harness/tls_resources.py to apply them before declaring them"
        )
    return CREATE[typ](inputs)
