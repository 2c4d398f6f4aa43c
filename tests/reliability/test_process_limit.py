"""processLimit is one stack's: a fork bomb in one stack's API leaves another stack on the same
engine serving and redeploying."""

import docker
import pytest

import contract
from tests.conftest import Up
from tests.engine_stacks import PROJECT, new_stack_name, smoke

pytestmark = pytest.mark.engine

# What a runaway app does, as the app would (its RLIMIT_NPROC is the one gunicorn sets to
# processLimit): start processes until the kernel refuses one, and leave them running. Each is
# `sleep`, so that they hold the uid's count without using memory; they end by themselves.
FORK_BOMB = """
import os, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
started = 0
while True:
    try:
        child = os.fork()
    except OSError as error:
        print(f"started {started}, then: {error}")
        break
    if child == 0:
        os.execv("/bin/sleep", ["sleep", "300"])
    started += 1
"""


def test_a_fork_bomb_in_one_stack_leaves_another_serving_and_redeploying(
    engine_up: Up, docker_client: docker.DockerClient
) -> None:
    name = new_stack_name()
    bombed, other = engine_up(f"{name}a"), engine_up(f"{name}b")
    api = docker_client.containers.get(bombed.exports[contract.EXPORT_API_CONTAINERS][0])
    user = api.attrs["Config"]["User"]
    limit = str(bombed.settings.process_limit)

    result = api.exec_run(["python", "-c", FORK_BOMB, limit], user=user)

    output = result.output.decode()
    assert "Resource temporarily unavailable" in output, output  # EAGAIN: the limit held
    served = smoke(other)
    assert served.returncode == 0, f"{other.name} after the fork bomb: {served.stdout}"
    redeployed = engine_up(other.name, apiAccessLog="true")  # new API containers
    api_names = {f"{PROJECT}-{other.name}-api-{n}" for n in (1, 2)}
    assert api_names <= set(redeployed.summary.replaced), redeployed.summary
    served = smoke(redeployed)
    assert served.returncode == 0, f"{other.name} redeployed: {served.stdout}{served.stderr}"
