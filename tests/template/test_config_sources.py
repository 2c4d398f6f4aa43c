"""Every place that lists the config keys agrees with infra/settings.py's KEYS: Pulumi.yaml's
template section (what `pulumi new` asks and writes), Pulumi.dev.yaml and the README's table.
A key missing, a default different or a secret flag different fails here."""

import re
from typing import Any

import pytest
import yaml

from settings import KEYS, KEYS_BY_NAME, SWARM_ONLY, Key
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit


def template_config() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["template"]["config"]


def readme_rows() -> dict[str, list[str]]:
    """The README's configuration table: cells by key."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| `")
    ]
    return {cells[0].strip("`"): cells for cells in rows}


def expected_entry(key: Key) -> dict[str, Any]:
    """What the template says of a key: its meaning as the prompt, its default, its secrecy."""
    entry: dict[str, Any] = {"description": key.meaning}
    if key.default_text is not None:
        entry["default"] = key.default_text
    if key.secret:
        entry["secret"] = True
    return entry


def test_the_template_asks_for_every_key_as_settings_describes_it() -> None:
    config = template_config()
    assert list(config) == [key.name for key in KEYS], "keys missing, extra or out of order"
    for key in KEYS:
        # Bare keys: `pulumi new` puts them under the new project's name.
        assert config[key.name] == expected_entry(key), key.name


def test_the_dev_stack_sets_every_key_to_its_default() -> None:
    """Pulumi.dev.yaml sets every key that has a default, to it; of those without one, the
    base images name the offline images, and tlsHostNames and publicHost stay unset (commented
    there): they follow the bind address; so does loadBalancerAddresses (no balancer). A secret
    is stored encrypted. The keys only a swarm reads are Pulumi.swarm.yaml's (the program
    refuses them on one engine)."""
    document = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    config = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    assert set(document["config"]) == {f"{project}:{name}" for name in config}
    missing = [
        key.name
        for key in KEYS
        if not key.secret
        and key.name not in config
        and key.name not in ("tlsHostNames", "publicHost", "loadBalancerAddresses", *SWARM_ONLY)
    ]
    assert not missing, f"Pulumi.dev.yaml does not set {missing}"
    assert not set(config) - set(KEYS_BY_NAME), "Pulumi.dev.yaml sets unknown keys"
    for name, value in config.items():
        key = KEYS_BY_NAME[name]
        encrypted = isinstance(value, dict) and "secure" in value
        assert encrypted == key.secret, f"{name}: secret is {key.secret}, encrypted {encrypted}"
        if key.default_text is not None:
            assert str(value) == key.default_text, f"{name}: {value!r}, not the default"
        elif not key.secret:
            key.parse(str(value))  # a value the program accepts


def test_the_readme_table_lists_every_key_with_its_default() -> None:
    rows = readme_rows()
    assert list(rows) == [key.name for key in KEYS], "README rows missing, extra or out of order"
    for key in KEYS:
        _, default, _, meaning = rows[key.name]
        written = re.match(r"`([^`]*)`", default)
        if key.default_text is None:
            assert written is None, f"{key.name}: README gives a default, settings has none"
        else:
            assert written and written.group(1) == key.default_text, f"{key.name}: {default}"
        assert ("secret" in meaning) == key.secret, f"{key.name}: secret flag differs"


def test_the_swarm_stack_shows_every_swarm_setting() -> None:
    """Pulumi.swarm.yaml runs on a swarm and names every key only a swarm reads (set, or
    commented with an example)."""
    text = (REPO_ROOT / "Pulumi.swarm.yaml").read_text()
    config = yaml.safe_load(text)["config"]
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    assert config[f"{project}:orchestrator"] == "swarm"
    for name in SWARM_ONLY:
        assert f"{project}:{name}:" in text, f"Pulumi.swarm.yaml does not show {name}"
    for name, value in config.items():
        if name.startswith(f"{project}:"):
            KEYS_BY_NAME[name.split(":", 1)[1]].parse(str(value))
