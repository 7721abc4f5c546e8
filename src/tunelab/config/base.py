"""A pydantic base model that rejects unknown keys with a did-you-mean hint."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict, model_validator


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
                    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise ValueError(
                        f"unknown key '{key}'{hint} (valid keys: {', '.join(sorted(known))})"
                    )
        return data
