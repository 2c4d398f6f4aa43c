"""What `pulumi new <template> --name N --description D --stack S --yes` writes, for a template
that is a directory or a repository (pulumi 1b59498: pkg/cmd/pulumi/templates/
project_templates.go CopyTemplateFiles, pkg/cmd/pulumi/project/newcmd/new.go and config.go).

1. Every file is copied (a clone of the repository holds its tracked files; only `.git` and
   `.pulumi.template.yaml` are skipped), with the placeholders below replaced.
2. Pulumi.yaml gets the project's name and description, loses its `template:` section, and
   gains the `pulumi:template` stack tag.
3. The template's config, each key's default (empty ones are skipped; a bare key takes the
   project's name as its namespace), is merged into Pulumi.<stack>.yaml: into the copied one
   when the template has a file of that name.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

# Replaced by the project's name and description in every text file, so spelled here in parts
# (a copy of this file would otherwise hold the new project's name instead).
PLACEHOLDERS = tuple("$" + "{" + word + "}" for word in ("PROJECT", "DESCRIPTION"))


def template_files(root: Path) -> list[str]:
    """The files a clone of the repository at `root` would hold: tracked ones, and new ones
    not yet committed (but not ignored ones such as .venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (root / name).is_file())


def copy_files(template: Path, dest: Path) -> None:
    """What `pulumi new` copies, as it is (no file holds a placeholder: tests/template)."""
    for relative in template_files(template):
        if Path(relative).name == ".pulumi.template.yaml":
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(template / relative, target)


def render(
    template: Path, dest: Path, *, name: str, description: str, stack: str, url: str
) -> dict[str, Any]:
    """Write the new project into `dest`; return its stack file's config."""
    copy_files(template, dest)

    project_file = dest / "Pulumi.yaml"
    project = yaml.safe_load(project_file.read_text())
    settings = project.pop("template")
    project["name"], project["description"] = name, description
    project.setdefault("config", {})["pulumi:tags"] = {"value": {"pulumi:template": url}}
    project_file.write_text(yaml.safe_dump(project, sort_keys=False))

    stack_file = dest / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
    config = document.setdefault("config", {})
    for key, entry in settings["config"].items():
        value = str(entry.get("default", ""))
        if value:
            full_key = key if ":" in key else f"{name}:{key}"
            # pulumi encrypts a secret with the stack's secrets provider.
            config[full_key] = {"secure": "<encrypted>"} if entry.get("secret") else value
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    return dict(config)
