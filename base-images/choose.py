"""Which base images a stack builds on: `make up` and `make local-up` run this first.

`python base-images/choose.py --stack dev`, with infra/ on the import path (the Makefile sets it).

- A stack that names its base images (apiBaseImage, proxyBaseImage) gets them; a local-only one
  (under .invalid) that the engine lacks is built by build.sh.
- A stack that names none builds on the official images its Dockerfiles name, where the engine
  has them or can pull them: nothing is built and nothing is written.
- Where the engine can't pull them (an air-gapped host, a mirror without them), build.sh builds
  the local base images from Debian's packages and the stack's file is set to them, said in one
  line. The choice is written down so that every later `pulumi up` builds on the same base
  instead of switching (and replacing every container) when a registry comes and goes.
- A stack whose engine is set in its file (`docker:host`, ...) may be another machine: this
  script asks only the local engine, so it leaves such a stack as it is.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors
import yaml

from rest_api_stack import (
    API_RUNTIMES,
    BASE_IMAGE_KEYS,
    CONTEXTS,
    dockerfile_base_image,
    is_local_only,
)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# The local images by role and API runtime: the names build.sh gives them (images.env).
LOCAL_NAME_VARIABLES = {
    ("api", "cpython"): "API_BASE_IMAGE",
    ("api", "pypy"): "PYPY_BASE_IMAGE",
    ("proxy", "cpython"): "PROXY_BASE_IMAGE",
    ("proxy", "pypy"): "PROXY_BASE_IMAGE",
}


def local_names() -> dict[str, str]:
    """base-images/images.env: variable -> image name."""
    lines = (HERE / "images.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def official_name(role: str, runtime: str, root: Path) -> str:
    """The image the Dockerfile (or, for the API, its runtime) builds on when none is set."""
    runtime_base = API_RUNTIMES[runtime].base_image if role == "api" else None
    return runtime_base or dockerfile_base_image(CONTEXTS[role], root)


def missing(client: docker.DockerClient, name: str, pull: bool) -> str | None:
    """None when the engine has the image (or, with `pull`, pulls it now); else why not."""
    try:
        client.images.get(name)
        return None
    except docker.errors.ImageNotFound as error:
        if not pull:
            return str(error.explanation)
    try:
        client.images.pull(name)
        return None
    except docker.errors.APIError as error:
        return str(error.explanation)


def set_key(path: Path, name: str, value: str) -> None:
    """Write `name: value` into a stack file: over the key's line, or its commented example
    (so the file keeps its comments and order), else first under `config:`."""
    text = path.read_text() if path.exists() else ""
    line = re.compile(rf"^  (# )?{re.escape(name)}:.*$", re.MULTILINE)
    if line.search(text):
        text = line.sub(lambda _: f"  {name}: {value}", text, count=1)
    elif "\nconfig:\n" in "\n" + text:
        head, _, rest = ("\n" + text).partition("\nconfig:\n")
        text = f"{head[1:]}\nconfig:\n  {name}: {value}\n{rest}".lstrip("\n")
    else:
        text += f"config:\n  {name}: {value}\n"
    path.write_text(text)


def main(argv: list[str], root: Path = REPO_ROOT) -> int:
    """Choose for the stack in `root` (a project's folder: Pulumi.yaml, the Dockerfiles)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    stack = parser.parse_args(argv).stack
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())["name"]
    path = root / f"Pulumi.{stack}.yaml"
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {} if path.exists() else {}
    runtime = str(config.get(f"{project}:apiRuntime", "cpython"))
    remote = sorted(key for key in config if key.startswith("docker:"))
    client = docker.from_env()
    build = False
    unpulled: dict[str, str] = {}  # key -> the official image the engine can't pull
    why = ""
    for role, key in BASE_IMAGE_KEYS.items():
        configured = str(config.get(f"{project}:{key}") or "")
        if configured:
            build |= is_local_only(configured) and bool(missing(client, configured, pull=False))
            continue
        official = official_name(role, runtime, root)
        if remote:
            print(f"base images: {key} unset: {official}, pulled by the engine {remote[0]} names")
            continue
        reason = missing(client, official, pull=True)
        if reason:
            why, unpulled[key] = reason, official
            set_key(path, f"{project}:{key}", local_names()[LOCAL_NAME_VARIABLES[role, runtime]])
    if unpulled:
        print(
            f"base images: the engine can't pull {', '.join(unpulled.values())} ({why}), so"
            f" {path.name} now sets {', '.join(unpulled)} to local ones built from Debian's"
            " packages (docs/offline.md)"
        )
        build = True
    if build:
        build_sh = ["bash", str(HERE / "build.sh")]
        subprocess.run(build_sh, check=True)  # noqa: S603 (a fixed command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
