"""Running a command for a test: in a given directory, its output captured as text, bounded in
time, and its exit status left to the test to judge."""

import subprocess
from pathlib import Path

TIMEOUT_SECONDS = 120


def run(
    command: list[str], cwd: Path, *, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
