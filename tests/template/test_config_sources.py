"""Every place that lists the config keys is generated from infra/config_keys.py's KEYS and
current: the Settings fields, Pulumi.yaml's template section (what `pulumi new` asks and
writes), Pulumi.dev.yaml, docs/configuration.md and the README's short table. A stale file, a
key missing, a default different or a secret flag different fails here."""

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.generate_config import WRITERS, main, rendered
from settings import KEYS, KEYS_BY_NAME, SWARM_ONLY, Key
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit


def template_config() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["template"]["config"]


def table_rows(name: str) -> dict[str, list[str]]:
    """The generated key table in `name` (README.md, docs/configuration.md): cells by key."""
    text = (REPO_ROOT / name).read_text().split("<!-- BEGIN generated", 1)[1]
    text = text.split("<!-- END generated", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| `")]
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
    """Pulumi.dev.yaml sets every key that has a default, to it; those without one stay unset
    (commented there): the base images (the Dockerfiles' official ones; `make up` sets local
    ones where the engine can't pull those), tlsHostNames and publicHost (they follow the bind
    address) and loadBalancerAddresses (no balancer). A secret
    is stored encrypted. The keys only a swarm reads are Pulumi.swarm.yaml's (the program
    refuses them on one engine)."""
    document = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    config = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    assert set(document["config"]) == {f"{project}:{name}" for name in config}
    with_default = [k.name for k in KEYS if k.default_text is not None and k.name not in SWARM_ONLY]
    missing = [name for name in with_default if name not in config]
    assert not missing, f"Pulumi.dev.yaml does not set {missing}"
    unset = {k.name for k in KEYS if k.default_text is None and not k.secret} - set(SWARM_ONLY)
    assert unset.isdisjoint(config), f"Pulumi.dev.yaml sets {sorted(unset & set(config))}"
    assert not set(config) - set(KEYS_BY_NAME), "Pulumi.dev.yaml sets unknown keys"
    for name, value in config.items():
        key = KEYS_BY_NAME[name]
        encrypted = isinstance(value, dict) and "secure" in value
        assert encrypted == key.secret, f"{name}: secret is {key.secret}, encrypted {encrypted}"
        if key.default_text is not None:
            assert str(value) == key.default_text, f"{name}: {value!r}, not the default"
        elif not key.secret:
            key.parse(str(value))  # a value the program accepts


@pytest.mark.parametrize("name", list(WRITERS))
def test_no_generated_file_is_stale(name: str) -> None:
    """What CI checks: each file that lists the keys is what `make generate` writes from
    infra/config_keys.py (regenerated here in memory)."""
    current, wanted = rendered()[name]
    assert current == wanted, f"{name} is stale: run `make generate` and commit the result"


def test_the_check_names_a_stale_file_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key edited in a generated file by hand, not in the table, fails the check."""
    for name in WRITERS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    template = tmp_path / "Pulumi.yaml"
    template.write_text(template.read_text().replace('default: "8080"', 'default: "9090"'))
    assert main(["--check"], root=tmp_path) == 1
    assert capsys.readouterr().err == "Pulumi.yaml is stale: run `make generate`\n"
    assert main([], root=tmp_path) == 0
    assert main(["--check"], root=tmp_path) == 0
    assert template.read_text() == (REPO_ROOT / "Pulumi.yaml").read_text()


def test_the_dev_stack_keeps_its_values_when_regenerated() -> None:
    """`make generate` rewrites comments and order, never a value the stack sets."""
    current = (REPO_ROOT / "Pulumi.dev.yaml").read_text()
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    edited = current.replace(f'{project}:apiReplicas: "2"', f'{project}:apiReplicas: "3"')
    edited += (
        "  docker:host: ssh://deploy@manager.example.com\n"
        f"  {project}:tlsHostNames:\n    - api.example.com\n    - localhost\n"
        f"  {project}:tlsPrivateKey:\n    secure: v1:bm9uY2U=:Y2lwaGVy\n"
    )
    regenerated = yaml.safe_load(WRITERS["Pulumi.dev.yaml"](edited))["config"]
    assert regenerated == yaml.safe_load(edited)["config"]
    assert regenerated[f"{project}:apiReplicas"] == "3"
    assert regenerated[f"{project}:tlsHostNames"] == ["api.example.com", "localhost"]


def test_the_configuration_page_lists_every_key_with_its_default() -> None:
    rows = table_rows("docs/configuration.md")
    assert list(rows) == [key.name for key in KEYS], "rows missing, extra or out of order"
    for key in KEYS:
        _, default, _, meaning = rows[key.name]
        written = re.match(r"`([^`]*)`", default)
        if key.default_text is None:
            assert written is None, f"{key.name}: the page gives a default, settings has none"
        else:
            assert written and written.group(1) == key.default_text, f"{key.name}: {default}"
        assert ("secret" in meaning) == key.secret, f"{key.name}: secret flag differs"


def test_the_readme_lists_the_ten_most_changed_settings_and_links_the_rest() -> None:
    top = [key.name for key in KEYS if key.docs.top]
    assert len(top) == 10, top
    assert list(table_rows("README.md")) == top
    assert "(docs/configuration.md)" in (REPO_ROOT / "README.md").read_text()


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
