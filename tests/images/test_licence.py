"""The licence each image declares is the repository's: its LICENSE file, identified by text."""

import re

import pytest

import contract
from tests.images.stack import REPO_ROOT

pytestmark = pytest.mark.unit

# SPDX identifier -> a sentence found in that licence's text and in no other one listed here.
LICENCE_TEXTS = {
    "MIT": "Permission is hereby granted, free of charge, to any person obtaining a copy",
    "Apache-2.0": "Apache License\n                           Version 2.0",
    "BSD-3-Clause": "Neither the name of the copyright holder nor the names of its",
}
LABEL = re.compile(r'org\.opencontainers\.image\.licenses="([^"]*)"')


def repository_licence() -> str:
    """The SPDX identifier of the licence in LICENSE (exactly one must match)."""
    path = REPO_ROOT / "LICENSE"
    assert path.is_file(), "the repository has no LICENSE file"
    text = path.read_text(encoding="utf-8")
    found = [spdx for spdx, sentence in LICENCE_TEXTS.items() if sentence in text]
    assert len(found) == 1, f"LICENSE is none or several of {sorted(LICENCE_TEXTS)}: {found}"
    return found[0]


@pytest.mark.parametrize("context", [contract.API_CONTEXT, contract.PROXY_CONTEXT])
def test_each_image_is_labelled_with_the_repository_licence(context: str) -> None:
    dockerfile = (REPO_ROOT / context / "Dockerfile").read_text(encoding="utf-8")
    assert LABEL.findall(dockerfile) == [repository_licence()], f"{context}/Dockerfile"
