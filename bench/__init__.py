"""The stack's benchmark: `python -m bench` (or `make bench`) deploys what it measures on the
local Docker engine, loads it with wrk, removes it, and writes bench/results/ (JSON, Markdown,
PNG). `python -m bench --quick --out DIR` is the seconds-long version CI runs."""

import sys
from pathlib import Path

# The program's shared names (contract.py) are top-level modules in infra/, as for Pulumi.
_INFRA_DIR = str(Path(__file__).resolve().parent.parent / "infra")
if _INFRA_DIR not in sys.path:
    sys.path.append(_INFRA_DIR)
