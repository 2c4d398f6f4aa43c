"""Images built the way pulumi-docker's `docker.Image` builds them: with BuildKit, through the
engine's own API, and rebuilt only when what the provider hashes has changed.

pulumi-docker `provider/image.go` dockerBuild: `ImageBuild` with builder version "2" (BuildKit,
its default), the context sent as a tar in the request body (no `--pull`). dockerd 20.10 runs
such a build with its integrated BuildKit, which takes a `FROM` image from the engine's own
store when it is there (moby `builder/builder-next/adapters/containerimage/pull.go`
ResolveImageConfig, "default == prefer local"): no registry is needed for the offline bases.

The provider decides whether to build from its inputs and a digest of the context
(`provider/provider.go` Check and hashContext): the Dockerfile's text, then every file the
`.dockerignore` lets through, by relative path, mode and content. A base image is a name in
that text, nothing more: a rebuilt base under the same name is not a change.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import docker
from docker.api.build import process_dockerfile
from docker.utils import build as build_utils
from docker.utils import tar


class BuildFailedError(RuntimeError):
    """The engine refused or failed the build."""


def ignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """The `.dockerignore` the provider reads: `<Dockerfile>.dockerignore` if there is one,
    else the context's (provider.go getIgnorePatterns)."""
    beside = dockerfile.with_name(f"{dockerfile.name}.dockerignore")
    for candidate in (beside, context / ".dockerignore"):
        if candidate.is_file():
            lines = (line.strip() for line in candidate.read_text().splitlines())
            return [line for line in lines if line and not line.startswith("#")]
    return []


def context_digest(context: Path, dockerfile: Path) -> str:
    """What the provider's hashContext covers: the Dockerfile's content, then each file of the
    context the ignore patterns let through (relative path, mode, content)."""
    digest = hashlib.sha256(dockerfile.read_bytes())
    included = build_utils.exclude_paths(str(context), ignore_patterns(context, dockerfile))
    for relative in sorted(included):
        path = context / relative
        if path.is_dir() and not path.is_symlink():
            continue
        content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(f"{relative}\0{path.lstat().st_mode:o}\0".encode())
        digest.update(hashlib.sha256(content).digest() + b"\0")
    return digest.hexdigest()


def build(
    client: docker.DockerClient,
    context: Path,
    dockerfile: Path,
    tag: str,
    args: dict[str, str],
    platform: str | None,
) -> str:
    """Build with BuildKit through the engine's API; return the image's id."""
    processed = process_dockerfile(str(dockerfile), str(context))
    # Compressed: BuildKit takes an uncompressed body for a tar only if its first header says
    # so, which Python's pax headers don't; gzip it recognises by its magic number.
    body = tar(
        str(context),
        exclude=ignore_patterns(context, dockerfile),
        dockerfile=processed,
        gzip=True,
    )
    params: dict[str, Any] = {
        "t": tag,
        "version": "2",  # BuildKit (pulumi-docker's defaultBuilder)
        "dockerfile": processed[0],
        "buildargs": json.dumps(args),
    }
    if platform:
        params["platform"] = platform
    # The Docker SDK's build has no BuildKit switch: its low-level calls, as its build makes
    # them (requirements pin docker<8).
    api = client.api
    image_id = None
    with (
        body,
        contextlib.closing(
            api._post(
                api._url("/build"),
                data=body,
                params=params,
                headers={"Content-Type": "application/x-tar"},
                stream=True,
            )
        ) as response,
    ):
        api._raise_for_status(response)
        for message in api._stream_helper(response, decode=True):
            if "errorDetail" in message:
                raise BuildFailedError(str(message["errorDetail"].get("message", message)))
            if message.get("id") == "moby.image.id":
                image_id = message["aux"]["ID"]
    if image_id is None:
        raise BuildFailedError(f"the engine named no image for {tag}")
    return str(image_id)


def push(client: docker.DockerClient, name: str) -> str:
    """Push `name` (registry/repository:tag) as the provider does after a build; return the
    repository's digest reference, `registry/repository@sha256:...` (its repoDigest)."""
    repository, _, tag = (
        name.rpartition(":") if "/" not in name.rpartition(":")[2] else (name, "", "")
    )
    digest = None
    for message in client.api.push(repository, tag or None, stream=True, decode=True):
        if "errorDetail" in message:
            raise BuildFailedError(str(message["errorDetail"].get("message", message)))
        digest = (message.get("aux") or {}).get("Digest", digest)
    if digest is None:
        raise BuildFailedError(f"the registry returned no digest for {name}")
    return f"{repository}@{digest}"
