"""The Docker engine a stack deploys to, from its `docker:` provider configuration, as
pulumi-docker connects (kreuzwerker internal/provider/provider.go and config.go): `docker:host`,
else DOCKER_HOST, else the local socket; `tcp://` with TLS from `docker:caMaterial`,
`docker:certMaterial` and `docker:keyMaterial` (PEM) or `docker:certPath` (a directory of
ca.pem, cert.pem, key.pem); `ssh://` through the ssh command, as the docker CLI does.
"""

import atexit
import shutil
import tempfile
from pathlib import Path

import docker
import docker.tls

# Provider keys the harness applies; any other `docker:` key is refused.
KNOWN: frozenset[str] = frozenset({"host", "caMaterial", "certMaterial", "keyMaterial", "certPath"})
# Docker 20.10's API, the oldest engine the stack supports; newer engines serve it too.
API_VERSION = "1.41"
MATERIAL = {"caMaterial": "ca.pem", "certMaterial": "cert.pem", "keyMaterial": "key.pem"}


class ProviderConfigError(ValueError):
    """A `docker:` key the harness does not apply, or TLS material that is incomplete."""


def provider_config(config: dict[str, str]) -> dict[str, str]:
    """The `docker:` keys of a stack's config, by name."""
    found = {
        key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("docker:")
    }
    unknown = sorted(set(found) - KNOWN)
    if unknown:
        raise ProviderConfigError(
            f"docker:{', docker:'.join(unknown)}: not applied by the engine harness"
        )
    return found


def engine_client(config: dict[str, str], timeout: int = 600) -> docker.DockerClient:
    """A client of the engine the stack's pulumi-docker provider would use."""
    docker_config = provider_config(config)
    host = docker_config.get("host")
    if host is None:
        return docker.from_env(timeout=timeout)
    if host.startswith("ssh://"):
        return docker.DockerClient(base_url=host, use_ssh_client=True, timeout=timeout)
    directory = docker_config.get("certPath")
    given = {name: docker_config[key] for key, name in MATERIAL.items() if key in docker_config}
    if given:
        if set(given) != set(MATERIAL.values()):
            # The provider would silently skip verification without a CA (services) or fail
            # (images): the harness asks for all three.
            raise ProviderConfigError(
                "docker:caMaterial, docker:certMaterial and docker:keyMaterial go together"
            )
        folder = Path(tempfile.mkdtemp(prefix="engine-tls-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for name, pem in given.items():
            (folder / name).write_text(pem)
            (folder / name).chmod(0o600)
        directory = str(folder)
    tls: docker.tls.TLSConfig | bool = False
    if directory:
        tls = docker.tls.TLSConfig(
            client_cert=(f"{directory}/cert.pem", f"{directory}/key.pem"),
            ca_cert=f"{directory}/ca.pem",
            verify=True,
        )
        host = host.replace("tcp://", "https://", 1)
    # A fixed API version: the client asks nothing before trust_env is off (requests would
    # verify by REQUESTS_CA_BUNDLE, where set, rather than the engine's CA).
    client = docker.DockerClient(base_url=host, tls=tls, timeout=timeout, version=API_VERSION)
    client.api.trust_env = False
    return client
