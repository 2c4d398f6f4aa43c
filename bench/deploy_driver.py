"""Deploy or remove a bench stack with the engine harness of a copy of the repository.

Run as a script by bench.deploys, one process per action, so that the harness, the program and
Pulumi's mock runtime are the copy's and start clean:

    python bench/deploy_driver.py ROOT STACK STATE_FILE CONFIG_JSON up|down

Prints one line of JSON: the seconds the action took, and for `up` what the harness did to
each resource (created, replaced, updated, unchanged, deleted) with its kind (API or proxy
container, image, network) and the stack's exports, or the error it failed with (exit code 1).
"""

import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    root, stack, state_file, config_file, action = argv
    # The copy first, and not this script's folder (its modules would shadow others).
    sys.path[0] = root
    import docker  # noqa: PLC0415 (after the path is the copy's)

    from engine_harness.__main__ import remove_labelled  # noqa: PLC0415
    from engine_harness.docker_mocks import (  # noqa: PLC0415
        CONTAINER,
        EngineMocks,
        destroy,
    )
    from engine_harness.program import project_name, run_program  # noqa: PLC0415

    client = docker.from_env(timeout=900)
    started = time.monotonic()
    result: dict[str, Any] = {}
    if action == "down":
        removed = destroy(client, Path(state_file)) + remove_labelled(client, project_name(), stack)
        result["removed"] = removed
    else:
        config = json.loads(Path(config_file).read_text())
        mocks = EngineMocks(client, Path(state_file))
        try:
            result["exports"] = run_program(mocks, stack, config)
        except Exception as error:  # a broken release: reported, and the exit code says so
            result["error"] = str(error)
            result["seconds"] = round(time.monotonic() - started, 2)
            print(json.dumps(result))
            return 1
        summary = mocks.finish()
        kinds = {}
        for record in mocks.applied:
            if record.typ == CONTAINER:
                labels = {e["label"]: e["value"] for e in record.inputs.get("labels") or []}
                kinds[record.name] = f"container:{labels.get('pulumi.role', '?')}"
            else:
                kinds[record.name] = record.typ.rsplit(":", 1)[-1].lower()
        result["summary"] = {
            action: sorted(getattr(summary, action))
            for action in ("created", "replaced", "updated", "unchanged", "deleted")
        }
        result["kinds"] = kinds
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
