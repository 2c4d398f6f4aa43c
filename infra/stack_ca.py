"""A certificate authority of the stack's own and the proxy's certificate from it (pulumi-tls).

The keys are made by the provider and kept in Pulumi's state as secrets (pulumi-tls marks
every private key output secret), so they are encrypted there and never in a file or an image.
Clients trust the CA (the stack exports it); browsers, which don't, get no HSTS (see the
proxy), so that a user can still go past their warning.
"""

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

# Keys: ECDSA P-256, the fastest handshakes every client accepts (Mozilla's recommendation).
KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
# The CA lives ten years; the proxy's certificate one, and any `pulumi up` in its last 30 days
# makes a new one (pulumi-tls marks it ready for renewal; the proxy is then replaced).
CA_VALIDITY_HOURS = 10 * 365 * 24
CERTIFICATE_VALIDITY_HOURS = 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24


@dataclass(frozen=True)
class StackCertificate:
    ca_certificate: pulumi.Output[str]
    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]


def issue(
    name: str, common_name: str, host_names: tuple[str, ...], parent: pulumi.Resource
) -> StackCertificate:
    """A CA named after the stack, and a server certificate from it for `host_names`."""
    child = pulumi.ResourceOptions(parent=parent)
    ca_key = tls.PrivateKey(
        f"{name}-ca-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=child
    )
    ca = tls.SelfSignedCert(
        f"{name}-ca",
        private_key_pem=ca_key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=f"{common_name} CA"),
        is_ca_certificate=True,
        set_subject_key_id=True,
        allowed_uses=["cert_signing", "crl_signing"],
        validity_period_hours=CA_VALIDITY_HOURS,
        early_renewal_hours=EARLY_RENEWAL_HOURS,
        opts=child,
    )
    key = tls.PrivateKey(
        f"{name}-proxy-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=child
    )
    addresses = [host for host in host_names if _is_address(host)]
    request = tls.CertRequest(
        f"{name}-proxy-csr",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=host_names[0]),
        dns_names=[host for host in host_names if host not in addresses],
        ip_addresses=addresses,
        opts=child,
    )
    certificate = tls.LocallySignedCert(
        f"{name}-proxy-cert",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        set_subject_key_id=True,
        allowed_uses=["digital_signature", "server_auth"],
        validity_period_hours=CERTIFICATE_VALIDITY_HOURS,
        early_renewal_hours=EARLY_RENEWAL_HOURS,
        opts=child,
    )
    return StackCertificate(ca.cert_pem, certificate.cert_pem, key.private_key_pem)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
