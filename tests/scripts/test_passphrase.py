"""The passphrase of the local stacks' secrets: the Makefile hands Pulumi one that is made once
(scripts/passphrase.py: random, mode 0600, never rewritten) unless the user set their own, and
the harness's state is encrypted with it as Pulumi's would be."""

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from engine_harness import state_secrets
from scripts.passphrase import ensure
from tests.commands import run
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

PASSPHRASE_KEYS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
# Stands in for the pulumi CLI: writes down the passphrase settings it was started with.
FAKE_PULUMI = """#!/usr/bin/env python3
import json, os
with open(os.environ["RECORD"], "a") as file:
    keys = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
    file.write(json.dumps({key: os.environ.get(key) for key in keys}) + "\\n")
"""


def make(tmp_path: Path, target: str, **user: str) -> tuple[Path, list[dict[str, str | None]]]:
    """Run `make target` with the default passphrase file under tmp_path, a fake pulumi, and
    `user`'s passphrase settings; the file's path and what each pulumi call was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "pulumi").write_text(FAKE_PULUMI)
    (bin_dir / "pulumi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (*PASSPHRASE_KEYS, "MAKEFLAGS")}
    record = tmp_path / "calls.jsonl"
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "RECORD": str(record), **user}
    default = tmp_path / "state" / "passphrase"
    command = ["make", "--no-print-directory", target, f"PASSPHRASE_FILE={default}"]
    done = run(command, REPO_ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = record.read_text().splitlines() if record.exists() else []
    return default, [json.loads(line) for line in lines]


def test_the_makefile_makes_a_passphrase_file_once_and_hands_it_to_pulumi(
    tmp_path: Path,
) -> None:
    default, calls = make(tmp_path, "destroy", STACK="t")
    assert calls == [
        {"PULUMI_CONFIG_PASSPHRASE": None, "PULUMI_CONFIG_PASSPHRASE_FILE": str(default)}
    ]
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    first = default.read_text()
    assert len(first.strip()) >= 40, first  # 256 random bits, URL-safe base64
    inode = default.stat().st_ino

    again, calls = make(tmp_path, "destroy", STACK="t")
    assert calls[-1]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(again)
    assert again.read_text() == first and again.stat().st_ino == inode, "rewritten"


@pytest.mark.parametrize(
    "user",
    [
        {"PULUMI_CONFIG_PASSPHRASE": "the user's"},
        {"PULUMI_CONFIG_PASSPHRASE": ""},  # Pulumi takes a set, empty passphrase as given
        {"PULUMI_CONFIG_PASSPHRASE_FILE": "/the/user's/file"},
    ],
    ids=["passphrase", "empty-passphrase", "passphrase-file"],
)
def test_a_users_own_passphrase_wins(tmp_path: Path, user: dict[str, str]) -> None:
    default, calls = make(tmp_path, "destroy", STACK="t", **user)
    assert calls == [{key: user.get(key) for key in PASSPHRASE_KEYS}]
    assert not default.exists(), "made a passphrase file the user's settings don't use"


def test_an_existing_file_is_kept_and_a_bad_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_text("mine\n")
    path.chmod(0o600)
    assert ensure(path) is False
    assert path.read_text() == "mine\n"

    path.chmod(0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        ensure(path)
    path.write_text(" \n")
    path.chmod(0o600)
    with pytest.raises(SystemExit, match="is empty"):
        ensure(path)


def test_the_harness_encrypts_with_the_passphrase_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "passphrase"
    assert ensure(path) is True
    for key in PASSPHRASE_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(path))
    salt = state_secrets.new_salt()
    sealed = state_secrets.encrypt({"key": "the CA's"}, salt)
    assert state_secrets.decrypt(sealed, salt) == {"key": "the CA's"}

    # Pulumi's order: a set PULUMI_CONFIG_PASSPHRASE wins over the file.
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    with pytest.raises(InvalidTag):
        state_secrets.decrypt(sealed, salt)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", path.read_text().strip())
    assert state_secrets.decrypt(sealed, salt) == {"key": "the CA's"}
