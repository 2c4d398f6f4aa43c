"""Test machinery: runs the Pulumi program under Pulumi's mock runtime with a mocks class that
applies each declared Docker resource to a real engine. Not a deploy path for users: real
deployments use `pulumi up` (`make up`)."""

import sys
from pathlib import Path

# The program's modules (contract, settings, ...) are top-level modules, as when Pulumi runs
# infra/__main__.py: make them importable for the harness too.
_INFRA_DIR = str(Path(__file__).resolve().parent.parent / "infra")
if _INFRA_DIR not in sys.path:
    sys.path.append(_INFRA_DIR)
