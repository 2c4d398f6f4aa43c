"""Run a rendered project's program under the mock runtime: `python run_rendered.py STACK`, in
the project's directory. Prints what it declared and exported as JSON; warnings go to stderr.

A process of its own, so that the rendered copy's modules are the ones imported (its own
infra/, Pulumi.yaml and Pulumi.<stack>.yaml), not the repository's.
"""

import json
import sys

from engine_harness.program import project_name, run_program, stack_config
from tests.infra.conftest import RecordingMocks


def main(stack: str) -> None:
    mocks = RecordingMocks()
    exports = run_program(mocks, stack, stack_config(stack), project_name())
    declared = [{"type": r.typ, "name": r.name, "inputs": r.inputs} for r in mocks.resources]
    print(json.dumps({"exports": exports, "resources": declared}))


if __name__ == "__main__":
    main(sys.argv[1])
