"""A problem with the stack's configuration, with the key(s) at fault as data."""

from collections.abc import Sequence


class ConfigProblem(ValueError):
    """What is wrong, and the keys it concerns: `key` is the one to change (the message starts
    with it), `keys` every key whose value the check read. Callers tell which keys failed by
    these fields, never by parsing the message."""

    def __init__(self, key: str, reason: str, *, also: Sequence[str] = ()) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
        self.keys: tuple[str, ...] = (key, *[name for name in also if name != key])
