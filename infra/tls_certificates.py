"""Checks of a certificate chain and private key given in config, before anything is created.

Everything nginx would refuse at start (or that clients would refuse later) is reported with
the config key to change: a PEM that doesn't parse, a key that doesn't match the certificate,
a certificate outside its validity period, one not valid for the configured host names.
"""

import ipaddress
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from config_problems import ConfigProblem

# Mozilla's "intermediate" profile: RSA of 2048 bits or more, or ECDSA on P-256 or P-384.
MIN_RSA_BITS = 2048
EC_CURVES = (ec.SECP256R1, ec.SECP384R1)


def is_host_name(value: str) -> bool:
    """A DNS name (a `*.` wildcard first label allowed) or an IP address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    labels = value.removeprefix("*.").split(".")
    return len(value) <= 253 and all(
        0 < len(label) <= 63
        and label.replace("-", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


def covers(certificate: x509.Certificate, host: str) -> bool:
    """Whether the certificate's subject alternative names include `host` (RFC 6125: the
    common name is not consulted; a wildcard stands for exactly one left-most label)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        host = host.lower().rstrip(".")
        for listed in names.get_values_for_type(x509.DNSName):
            name = listed.lower().rstrip(".")
            if name == host or (
                name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in name[2:]
            ):
                return True
        return False
    return address in names.get_values_for_type(x509.IPAddress)


def _key_problem(key: object) -> str | None:
    if isinstance(key, rsa.RSAPrivateKey):
        return None if key.key_size >= MIN_RSA_BITS else f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return None if isinstance(key.curve, EC_CURVES) else f"an EC key on {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key (browsers don't accept Ed25519 certificates)"
    return f"a {type(key).__name__}"


def problems(
    chain_pem: str,
    key_pem: str,
    host_names: Sequence[str],
    now: datetime,
    *,
    chain_key: str,
    key_key: str,
    hosts_key: str,
) -> list[ConfigProblem]:
    """What is wrong with a provided chain (leaf first) and key, each naming its config key."""
    found: list[ConfigProblem] = []
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as error:
        chain = []
        found.append(ConfigProblem(chain_key, f"not a PEM certificate chain ({error})"))
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        key = None
        found.append(
            ConfigProblem(key_key, "the key is encrypted; give it unencrypted (a secret in config)")
        )
    except (ValueError, UnsupportedAlgorithm) as error:
        key = None
        found.append(ConfigProblem(key_key, f"not a PEM private key ({error})"))
    if key is not None and (kind := _key_problem(key)) is not None:
        found.append(
            ConfigProblem(key_key, f"{kind}; use RSA of {MIN_RSA_BITS}+ bits or ECDSA P-256/P-384")
        )
    if not chain:
        return found
    leaf = chain[0]
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key is not None and key.public_key().public_bytes(
        der, spki
    ) != leaf.public_key().public_bytes(der, spki):
        found.append(
            ConfigProblem(
                key_key,
                f"does not match the certificate in {chain_key} (the first one, for"
                f" {leaf.subject.rfc4514_string() or 'an empty subject'})",
                also=[chain_key],
            )
        )
    for position, certificate in enumerate(chain, start=1):
        which = "the certificate" if position == 1 else f"certificate {position} of the chain"
        if now > certificate.not_valid_after_utc:
            found.append(
                ConfigProblem(
                    chain_key, f"{which} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
                )
            )
        elif now < certificate.not_valid_before_utc:
            found.append(
                ConfigProblem(
                    chain_key,
                    f"{which} is not valid before"
                    f" {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                )
            )
    missing = [host for host in host_names if not covers(leaf, host)]
    if missing:
        found.append(
            ConfigProblem(
                chain_key,
                f"the certificate is not valid for {', '.join(missing)} (its subject"
                f" alternative names must include every name in {hosts_key})",
                also=[hosts_key],
            )
        )
    return found
