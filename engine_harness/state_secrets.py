"""Secrets in the harness's state file, encrypted as Pulumi's passphrase secrets manager does.

The program's secrets (a private key, an environment holding one) reach the mocks wrapped in
Pulumi's secret signature. The harness applies the plain value, returns the outputs wrapped
again (so the program's outputs stay secret), and writes them to its state file only
encrypted: AES-256-GCM with a key derived from the passphrase by PBKDF2-SHA256 (1,000,000
rounds) and a salt of the state file's own (8 random bytes, kept base64-encoded), as pulumi's
`sdk/go/common/resource/config/crypt.go` (symmetricCrypter) and
`pkg/secrets/passphrase/manager.go` do: tests/infra/test_pulumi_cli.py decrypts what the real
CLI encrypts, and the CLI what the harness encrypts. The passphrase is found as
pulumi's `readPassphrase` finds it: PULUMI_CONFIG_PASSPHRASE if set (even empty), else the
trimmed contents of the file PULUMI_CONFIG_PASSPHRASE_FILE names (the Makefile's default, a
file it makes). With neither, as in the tests, it is empty, which hides nothing from someone
who has the state file.
"""

import base64
import functools
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret, wrap_rpc_secret

SIGNATURE_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 (Pulumi's secret marker)
ROUNDS = 1_000_000


def contains_secret(value: Any) -> bool:
    if is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    return False


def unwrap(value: Any) -> Any:
    """The plain value, every secret in it unwrapped."""
    value = unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def wrap(values: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """`values` with those of `keys` wrapped as secrets, as the engine returns them."""
    return {k: wrap_rpc_secret(v) if k in keys else v for k, v in values.items()}


def new_salt() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


@functools.lru_cache(maxsize=8)
def _key(passphrase: str, salt: str) -> bytes:
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=base64.b64decode(salt), iterations=ROUNDS
    )
    return kdf.derive(passphrase.encode())


def _passphrase() -> str:
    if (phrase := os.environ.get("PULUMI_CONFIG_PASSPHRASE")) is not None:
        return phrase
    if path := os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return Path(path).read_text().strip()
    return ""


def encrypt_text(plain: str, salt: str) -> str:
    """A v1 ciphertext of `plain`, as Pulumi writes a secret config value."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key(_passphrase(), salt)).encrypt(nonce, plain.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"


def encrypt(value: Any, salt: str) -> dict[str, str]:
    """A value as Pulumi writes a secret in state: its signature and a v1 ciphertext."""
    return {SIGNATURE_KEY: SECRET_SIGNATURE, "ciphertext": encrypt_text(json.dumps(value), salt)}


def decrypt_text(ciphertext: str, salt: str) -> str:
    """The plain text of a v1 ciphertext (`v1:<nonce>:<sealed>`, base64 parts)."""
    _, nonce, text = ciphertext.split(":")
    plain = AESGCM(_key(_passphrase(), salt)).decrypt(
        base64.b64decode(nonce), base64.b64decode(text), None
    )
    return plain.decode()


def decrypt(sealed: dict[str, str], salt: str) -> Any:
    return json.loads(decrypt_text(sealed["ciphertext"], salt))
