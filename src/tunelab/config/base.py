"""A pydantic base model that rejects unknown keys with a did-you-mean hint; name checks."""

from __future__ import annotations

from pathlib import PureWindowsPath

from pydantic import BaseModel, ConfigDict, model_validator

from tunelab.config.hints import did_you_mean, not_ours


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message names the key and the file."""


class UserError(Exception):
    """Bad input the user can fix. The message names the file, line and field when there is one.

    Defined here, at the root of the import graph, so every package can raise it and the CLI
    (tunelab.cli.errors) turns it into one line on stderr."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data):
        # pydantic's own "extra_forbidden" error does not suggest the key the user meant.
        if isinstance(data, dict):
            known = set(cls.model_fields)
            for field in cls.model_fields.values():
                if field.alias:
                    known.add(field.alias)
            for key in data:
                if key not in known:
                    if note := not_ours(str(key)):  # a foreign setting with no equivalent: say so
                        raise ValueError(f"unknown key '{key}': {note}")
                    hint = did_you_mean(cls, str(key), known, data[key])
                    if hint:  # one clear line; the list of every key only when nothing is close
                        raise ValueError(f"unknown key '{key}'; did you mean {hint}?")
                    raise ValueError(f"unknown key '{key}' (valid keys: {', '.join(sorted(known))})")
        return data


# Names that become file or folder names (run, task, stage and study names): one path component.
MAX_NAME_BYTES = 255  # the file-name limit of ext4, APFS, NTFS and most others
NAME_RULE = ("it becomes a file or folder name: use one plain name (at most 255 bytes, no '/' or "
             "'\\', no control characters, not '.' or '..')")


def check_path_name(value: str, what: str) -> str:
    """`value` unchanged if it is safe as a single file or folder name, else a ConfigError.

    `what` names the key (e.g. "run name"). A name with a separator, `..` or an absolute path
    would put files outside the output folder; control characters break terminals and logs."""
    problem = None
    if not value.strip():
        problem = "is empty"
    elif value in (".", ".."):
        problem = "is the parent folder" if value == ".." else "is the current folder"
    elif value.startswith(("/", "\\")):
        problem = "is an absolute path"
    elif PureWindowsPath(value).drive:
        problem = f"starts with the drive '{PureWindowsPath(value).drive}'"
    elif "/" in value or "\\" in value:
        separator = "/" if "/" in value else "\\"
        problem = f"contains the path separator '{separator}'"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        bad = next(ch for ch in value if ord(ch) < 32 or ord(ch) == 127)
        problem = f"contains the control character U+{ord(bad):04X}"
    elif len(value.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is {len(value.encode('utf-8'))} bytes long"
    if problem:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ConfigError(f"{what} {shown!r} {problem}; {NAME_RULE}")
    return value
