"""A certificate authority made in the test, for stacks with tlsMode provided."""

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import UniformResourceIdentifier as URI
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CRL = "http://ca.invalid/test.crl"
OCSP = "http://ca.invalid/ocsp"


def key_pem(key: Key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def cert_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Authority:
    key: Key
    certificate: x509.Certificate

    @classmethod
    def make(cls, name: str = "Test CA") -> "Authority":
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def pem(self) -> str:
        return cert_pem(self.certificate)

    def issue(
        self,
        names: list[str],
        *,
        key: Key | None = None,
        valid_from: datetime | None = None,
        valid_for: timedelta = timedelta(days=90),
        revocation: bool = False,
        client: bool = False,
    ) -> tuple[str, str]:
        """A server certificate for `names` (DNS names and IP addresses): (chain PEM, key PEM).
        `revocation`: with a CRL and an OCSP address (never asked: .invalid), as a public CA's
        certificates have them. `client`: a client certificate (e.g. for Docker's TLS API)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = valid_from or datetime.now(UTC) - timedelta(hours=1)
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        if revocation:
            builder = builder.add_extension(
                x509.CRLDistributionPoints([x509.DistributionPoint([URI(CRL)], None, None, None)]),
                critical=False,
            ).add_extension(
                x509.AuthorityInformationAccess(
                    [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, URI(OCSP))]
                ),
                critical=False,
            )
        signed = builder.sign(self.key, hashes.SHA256())
        return cert_pem(signed), key_pem(key)
