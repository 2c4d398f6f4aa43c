"""`python -m engine_harness up|down [--stack NAME] [--refresh]`: deploy or remove a stack on
the local Docker engine through the engine-backed mocks (what `make local-up` / `make
local-down` run).

`up` prints what it did on stderr and the proxy URL as the last line on stdout; with `--json`
(what the benchmark reads), one line of JSON instead: the seconds it took, what it did to each
resource, each resource's kind and the stack's exports, or the error it failed with. With tlsMode
self-signed it writes the stack's CA certificate next to its state (`.engine-state/<project>-
<stack>.ca.pem`, named on stderr), the `caCertificate` output to verify the URL by. Both are
idempotent: `up` with nothing changed changes nothing; `down` on nothing removes nothing.
Only objects labelled with this project and stack are ever removed.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

import contract
from engine_harness.docker_mocks import CONTAINER, EngineMocks, Summary, destroy, remove_network
from engine_harness.engine_client import ProviderConfigError, engine_client
from engine_harness.program import REPO_ROOT, project_name, run_program, stack_config

STATE_DIR = REPO_ROOT / ".engine-state"


def remove_labelled(client: docker.DockerClient, project: str, stack: str) -> list[str]:
    """Services, containers, secrets and networks of this project and stack that no state file
    records (left by an interrupted run). Other stacks' and unlabelled objects are never
    touched."""
    labels = [f"{contract.LABEL_PROJECT}={project}", f"{contract.LABEL_STACK}={stack}"]
    removed = []
    swarm = client.info().get("Swarm", {}).get("ControlAvailable", False)
    for service in client.services.list(filters={"label": labels}) if swarm else []:
        service.remove()
        removed.append(service.name)
    for container in client.containers.list(all=True, filters={"label": labels}):
        container.remove(force=True)
        removed.append(container.name)
    for secret in client.secrets.list(filters={"label": labels}) if swarm else []:
        secret.remove()
        removed.append(secret.name)
    for network in client.networks.list(filters={"label": labels}):
        remove_network(client, network.id)
        removed.append(network.name)
    return removed


def json_report(mocks: EngineMocks, summary: Summary, exports: dict[str, Any]) -> dict[str, Any]:
    """What `up --json` prints: names by action, kinds by name (container:<role>, image,
    network, ...), exports."""
    kinds = {}
    for record in mocks.applied:
        if record.typ == CONTAINER:
            labels = {e["label"]: e["value"] for e in record.inputs.get("labels") or []}
            kinds[record.name] = f"container:{labels.get(contract.LABEL_ROLE, '?')}"
        else:
            kinds[record.name] = record.typ.rsplit(":", 1)[-1].lower()
    actions = ("created", "replaced", "updated", "unchanged", "deleted")
    return {
        "summary": {a: sorted(getattr(summary, a)) for a in actions},
        "kinds": kinds,
        "exports": exports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine_harness", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--stack", default="dev", help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="up: read every object back from the engine first, as `pulumi up --refresh`",
    )
    parser.add_argument("--json", action="store_true", help="up: one line of JSON on stdout")
    args = parser.parse_args(argv)
    project = project_name()
    state_file = STATE_DIR / f"{project}-{args.stack}.json"
    try:
        config = stack_config(args.stack)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        # The engine the stack's pulumi-docker provider deploys to (docker:host, ...).
        client = engine_client(config)
        client.ping()
    except (docker.errors.DockerException, ProviderConfigError) as error:
        print(f"error: no Docker engine answers: {error}", file=sys.stderr)
        return 1
    started = time.monotonic()

    if args.action == "down":
        removed = destroy(client, state_file) + remove_labelled(client, project, args.stack)
        print(f"stack {args.stack}: removed {len(removed)} objects {removed}", file=sys.stderr)
        return 0
    mocks = EngineMocks(client, state_file)
    try:
        if args.refresh:
            gone = mocks.refresh()
            print(f"refreshed: {len(gone)} gone from the engine {sorted(gone)}", file=sys.stderr)
        exports = run_program(mocks, args.stack, config, project)
    except Exception as error:  # the user gets the reason, not a traceback
        if args.json:
            seconds = round(time.monotonic() - started, 2)
            print(json.dumps({"error": str(error), "seconds": seconds}))
        print(f"error: stack {args.stack} not deployed: {error}", file=sys.stderr)
        print("fix the cause and run again, or remove it with `make local-down`", file=sys.stderr)
        return 1
    summary = mocks.finish()
    ca = exports.get(contract.EXPORT_CA_CERTIFICATE)
    if ca:
        ca_file = ca_path(state_file)
        ca_file.write_text(ca)
        print(f"the stack's CA certificate: {ca_file}", file=sys.stderr)
    if args.json:
        report = json_report(mocks, summary, exports)
        print(json.dumps({**report, "seconds": round(time.monotonic() - started, 2)}))
        return 0
    for action in ("created", "replaced", "updated", "unchanged", "deleted"):
        names = getattr(summary, action)
        print(f"{action}: {len(names)} {sorted(names)}", file=sys.stderr)
    print(exports[contract.EXPORT_URL])
    return 0


def ca_path(state_file: Path) -> Path:
    """Where `up` writes the stack's CA certificate."""
    return state_file.with_suffix(".ca.pem")


if __name__ == "__main__":
    sys.exit(main())
