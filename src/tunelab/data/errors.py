"""Bad input records: one clear error naming file, line (or row) and field, or a skip list."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem the user can fix. The message starts with `file:line:` and names the field."""


class BadRecord(DataError):
    """One record that cannot be used; `where` is `file:line` (or `file:row N`)."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class ErrorPolicy:
    """`on_error: raise` stops at the first bad record; `skip` records every skipped one."""

    def __init__(self, mode: str = "raise"):
        if mode not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', not {mode!r}")
        self.mode = mode
        self.skipped: list[str] = []

    def bad(self, error: BadRecord) -> None:
        if self.mode == "raise":
            raise error
        self.skipped.append(str(error))
