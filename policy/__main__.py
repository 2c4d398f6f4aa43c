"""The policy pack `pulumi preview --policy-pack policy` runs: the policies of hardening.py,
every one mandatory (a violation stops the preview, and `pulumi up` before anything changes)."""

from pulumi_policy import EnforcementLevel, PolicyPack

import hardening

PolicyPack(
    name="pulumi-flask-rebar-hardening",
    policies=list(hardening.POLICIES),
    enforcement_level=EnforcementLevel.MANDATORY,
)
