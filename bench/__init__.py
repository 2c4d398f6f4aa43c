"""The stack's benchmark (`make bench`): see bench/README.md."""

import engine_harness  # noqa: F401 (puts infra/ on the import path: the program's `contract`)
