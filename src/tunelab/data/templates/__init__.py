"""Built-in chat templates (one Jinja file each) and the `data.chat_template` choice.

A choice is a built-in name (`chatml`, `llama-3`, ...), a Jinja file, or `tokenizer` / null: the
tokenizer's own template. Every template, a user's file included, is rendered by transformers in
its immutable Jinja sandbox (a config file must not run code); a file's syntax is checked here,
when the data is prepared, so a typo fails before any model runs.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

from tunelab.config.data import BUILTIN_CHAT_TEMPLATES, TOKENIZER_TEMPLATE
from tunelab.data.errors import DataError

_COMMENT = re.compile(r"\{#.*?#\}", re.S)


def builtin_source(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def is_file_choice(choice: str | None) -> bool:
    return choice is not None and choice not in (*BUILTIN_CHAT_TEMPLATES, TOKENIZER_TEMPLATE)


def absolute_choice(choice: str | None, base: str | Path) -> str | None:
    """The choice with a relative Jinja path made absolute against `base` (the config's folder),
    so that a run's choice still names the same file from another working folder."""
    if not is_file_choice(choice) or Path(choice).expanduser().is_absolute():
        return choice
    return str(Path(base) / choice)


def template_source(choice: str | None, config_dir: str | Path = ".") -> str | None:
    """The Jinja text of a choice; None for the tokenizer's own template."""
    if choice in (None, TOKENIZER_TEMPLATE):
        return None
    if choice in BUILTIN_CHAT_TEMPLATES:
        return builtin_source(choice)
    path = Path(absolute_choice(choice, config_dir)).expanduser()
    if not path.is_file():
        raise DataError(f"data.chat_template: {path} does not exist (built-in templates: "
                        f"{', '.join(BUILTIN_CHAT_TEMPLATES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"data.chat_template: {path} is not UTF-8 text") from None
    check_syntax(text, str(path))
    return text


def check_syntax(text: str, what: str) -> None:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:  # transformers' own settings: a template that parses here parses there
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise DataError(f"data.chat_template: {what}: template syntax error on line {exc.lineno}: "
                        f"{exc.message}") from None


def use_chat_template(tokenizer, choice: str | None, config_dir: str | Path = ".") -> str | None:
    """Set the chosen template on `tokenizer`, so that the tokenizer a run saves (final/) and
    everything that loads it later (eval --run, an exported model) uses the same one. The
    tokenizer's own template (choice None or `tokenizer`) leaves it as it is."""
    source = template_source(choice, config_dir)
    if source is not None:
        tokenizer.chat_template = source
    return source


def template_code(tokenizer, source: str | None) -> str:
    """The template's Jinja code without its comments (what it can react to), '' for none."""
    if source is None:
        try:
            source = tokenizer.get_chat_template()
        except ValueError:  # no template at all
            return ""
    return _COMMENT.sub("", source or "")


def digest(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] if text else None
