"""Make the passphrase that encrypts the local stacks' secrets, once: `passphrase.py PATH`.

The Makefile runs this before every command that opens Pulumi's state (or the harness's) when
you set neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE, and points
PULUMI_CONFIG_PASSPHRASE_FILE at PATH. A new file holds 256 random bits, is readable by its
owner alone (mode 0600) and appears whole: it is written under another name, then linked to
PATH, which fails if PATH exists, so two runs at once keep the first one's and nothing reads a
half-written file. An existing file is never rewritten: the state can only be decrypted with
the passphrase it was encrypted with.
"""

import os
import secrets
import stat
import sys
from pathlib import Path

ENTROPY_BYTES = 32


def ensure(path: Path) -> bool:
    """Create `path` with a new passphrase unless it exists; True if this call created it.
    Raise SystemExit, saying what to do, when an existing file is empty or others can read it."""
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(ENTROPY_BYTES) + "\n")
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(staged, path)
                created = True
            except FileExistsError:
                pass
        finally:
            staged.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SystemExit(f"{path}: not its owner's alone (mode {mode:o}): chmod 600 {path}")
    # Pulumi trims the file; an empty passphrase would encrypt with a key anyone can derive.
    if not path.read_text().strip():
        raise SystemExit(f"{path} is empty: remove it, and the next make makes a new one")
    return created


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} PATH")
    if ensure(Path(sys.argv[1])):
        print(f"made {sys.argv[1]}: the passphrase of this checkout's stacks; keep it")
