"""`make policy` where there is no pulumi CLI: the program runs under Pulumi's mock runtime with
the stack's config, and every policy of the pack checks what it declared, as
`pulumi preview --policy-pack policy` would. Exits 1 when any policy is violated.

`python policy/mock_preview.py --stack dev`, from the project's directory with it on
PYTHONPATH. The mocks answer as pulumi-docker would in outline (an image's ID as its
`repoDigest`, a generated container name); nothing touches a Docker engine.
"""

import argparse
import hashlib
import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

import hardening
from engine_harness import tls_resources
from engine_harness.docker_mocks import Options, autoname
from engine_harness.program import project_name, run_program, stack_config
from engine_harness.provider_rules import GET_REMOTE_IMAGE
from engine_harness.state_secrets import unwrap


@dataclass
class Declared:
    """One resource the program registered, as a policy pack is told of it."""

    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    options: Options


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str


def _digest(value: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class DeclaringMocks(pulumi.runtime.Mocks):
    """Record every registration; answer with outputs shaped like pulumi-docker's."""

    def __init__(self) -> None:
        self.declared: list[Declared] = []
        self.options: dict[str, Options] = {}  # filled by the harness's OptionsMonitor
        self._lock = threading.Lock()  # resources register from several threads

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = unwrap(args.inputs)  # secrets as plain values, as a policy reads them
        outputs = dict(inputs)
        if args.typ in tls_resources.CREATE:  # the stack's CA: real keys and certificates
            _, outputs = tls_resources.create(args.typ, args.name, inputs)
        if args.typ == hardening.IMAGE:
            outputs["repoDigest"] = _digest(args.inputs)  # the built image's ID
        if args.typ == hardening.CONTAINER and "name" not in args.inputs:
            outputs["name"] = autoname(args.name)
        with self._lock:
            options = self.options[args.name]
            self.declared.append(Declared(args.typ, args.name, inputs, outputs, options))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        if args.token != GET_REMOTE_IMAGE:
            raise NotImplementedError(f"no mock answer for the invoke {args.token}")
        return {"id": _digest(args.args["name"]), "name": args.args["name"]}, []


def declare(stack: str, config: dict[str, str], project: str | None = None) -> list[Declared]:
    """What the program declares for `stack` with `config` (keys "<project>:<key>")."""
    mocks = DeclaringMocks()
    run_program(mocks, stack, config, project)
    return mocks.declared


def _options(declared: Declared) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=list(declared.options.ignore_changes),
        delete_before_replace=declared.options.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=declared.options.parent or None,
    )


def _stack_resources(declared: Sequence[Declared]) -> list[PolicyResource]:
    """The stack as a stack policy sees it: outputs, parents and dependencies linked."""
    resources = {
        d.options.urn: PolicyResource(
            d.typ,
            unknown_checking_proxy(d.outputs),
            d.options.urn,
            d.name,
            _options(d),
            None,
            None,
            [],
            {},
        )
        for d in declared
    }
    for d in declared:
        resource = resources[d.options.urn]
        resource.parent = resources.get(d.options.parent)
        resource.dependencies = [resources[u] for u in d.options.dependencies if u in resources]
        resource.property_dependencies = {
            key: [resources[u] for u in urns if u in resources]
            for key, urns in d.options.property_dependencies.items()
        }
    return list(resources.values())


def _reporter(found: list[Violation], policy: str, resource: str | None) -> ReportViolation:
    """report_violation for one policy: a resource policy's violations are always the
    validated resource's (pulumi ignores the urn given), a stack policy's the urn given."""

    def report(message: str, urn: str | None = None) -> None:
        found.append(Violation(policy, resource or urn or "", message))

    return report


def check(
    declared: Sequence[Declared],
    policies: Sequence[ResourceValidationPolicy | StackValidationPolicy] = hardening.POLICIES,
) -> list[Violation]:
    """Every violation of `policies` by the declared resources (each policy's validate, given
    the arguments the pack is given under `pulumi preview`)."""
    found: list[Violation] = []
    for policy in policies:
        if isinstance(policy, StackValidationPolicy):
            stack = StackValidationArgs(_stack_resources(declared))
            policy.validate(stack, _reporter(found, policy.name, None))
            continue
        for d in declared:
            args = ResourceValidationArgs(
                d.typ, unknown_checking_proxy(d.inputs), d.options.urn, d.name, _options(d), None
            )
            policy.validate(args, _reporter(found, policy.name, d.options.urn))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name (Pulumi.<stack>.yaml)")
    stack = parser.parse_args(argv).stack
    declared = declare(stack, stack_config(stack), project_name())
    violations = check(declared)
    for violation in violations:
        print(f"mandatory  [{violation.policy}]  {violation.message}\n    {violation.urn}")
    print(
        f"{len(declared)} resources of stack {stack} checked against {len(hardening.POLICIES)}"
        f" policies (mock runtime, no pulumi CLI): {len(violations)} violations"
    )
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
