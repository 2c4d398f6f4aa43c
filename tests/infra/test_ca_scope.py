"""The stack's CA can't be limited to the stack's names by pulumi-tls, and docs/https.md says so
and what to do: if a pulumi-tls release adds name constraints, this fails, to use them."""

import inspect
import re

import pulumi_tls as tls
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit


def test_pulumi_tls_has_no_name_constraints_and_the_docs_say_so() -> None:
    inputs = set(inspect.signature(tls.SelfSignedCertArgs.__init__).parameters) - {"__self__"}
    assert {"dns_names", "ip_addresses", "is_ca_certificate", "max_path_length"} <= inputs
    constraints = [name for name in inputs if re.search("constrain|permit|exclu", name)]
    assert constraints == [], f"pulumi-tls can constrain the CA now: use {constraints}"

    https = " ".join((REPO_ROOT / "docs" / "https.md").read_text().split())
    assert "**What the stack's CA can sign.**" in https
    assert "no X.509 name constraints" in https and "signs for any name" in https
