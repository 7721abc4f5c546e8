"""The commands README.md and docs/*.md show exist and take the flags they show.

A README command that no longer exists, or whose flags changed, fails here rather than on a
user's machine. Every command in a shell block (and, in README.md, every inline `tunelab ...`) is
read from the text itself:
- cheap README commands run as shown: every named subcommand's --help, `tunelab init`, `tunelab
  data preview` on the built-in example (its output must contain what the README prints),
  `tunelab power`, `tunelab models`, `tunelab score` on a two-record file;
- the rest (train, demo, eval...: minutes each) go through the CLI's own parsing
  (tunelab.cli.main.main with the command itself replaced by a recorder), their key=value
  overrides are validated against a config, and the repository files they name must exist;
- `accelerate launch` / `torchrun` lines: their own flags are checked against accelerate's and
  torchrun's parsers, the tunelab command after `-m tunelab.cli` as above; `make` targets against
  the Makefile; `pip install 'tunelab[extra]'` against pyproject.toml's extras.
docs/*.md shell blocks get the checks that run nothing. Everything runs in this process: about
7 s on 2 cores, most of it the data preview.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import tunelab.cli.errors
from tunelab.cli.main import COMMANDS, main
from tunelab.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^\s*```(\S*)\s*$")
NOT_SHELL = {"yaml", "yml", "python", "json", "jinja", "text"}  # fenced blocks that hold no commands
PROGRAMS = ("tunelab", "accelerate", "torchrun", "python", "make", "pip")
PLACEHOLDER_CONFIGS = {"CONFIG", "CONFIG.yaml", "cfg.yaml", "my.yaml", "exp.yaml"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line, for the failure message
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.words)}"


def _words(text: str) -> tuple[str, ...]:
    """shlex words without a trailing comment, `...` and the brackets of optional parts
    (`[key=value ...]`, `[--alphas 0,0.5,1]`); a value like seeds='[0,1,2]' keeps its brackets."""
    words, optional = [], False
    for word in shlex.split(text, comments=True):
        if word.startswith("["):
            word, optional = word[1:], True
        if optional and word.endswith("]"):
            word, optional = word[:-1], False
        if word and word.strip(".") and word != "key=value":  # `...` and the override placeholder
            words.append(word)
    return tuple(words)


def fenced_commands(path: Path) -> list[Command]:
    """Lines of shell blocks that start with a known program; `\\` continuations joined."""
    found, lang, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            lang = None if lang is not None else fence.group(1).lower()
            continue
        if lang is None or lang in NOT_SHELL:
            continue
        start = start if pending else number
        text = pending + line.strip().removeprefix("$ ")
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.split(" ", 1)[0] in PROGRAMS:
            found.append(Command(f"{path.name}:{start}", _words(text)))
    return found


def inline_commands(path: Path) -> list[Command]:
    """`tunelab ...` in running text; `tunelab eval/forgetting/compare --flag` is one per command."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"`(tunelab[ \n][^`]*)`", text):
        words = _words(match.group(1).replace("\n", " "))
        where = f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}"
        sub = words[1] if len(words) > 1 else ""
        if sub.startswith("<"):  # `tunelab <command>`
            continue
        for name in sub.split("/") if re.fullmatch(r"[a-z]+(/[a-z]+)+", sub) else [sub]:
            found.append(Command(where, (words[0], name, *words[2:]) if name else words))
    return found


README_COMMANDS = fenced_commands(README) + inline_commands(README)
DOCS_COMMANDS = [c for path in DOCS for c in fenced_commands(path)]


def tunelab_argv(command: Command) -> list[str] | None:
    """The tunelab arguments of a command (also after `-m tunelab.cli`), None when it runs no tunelab."""
    words = list(command.words)
    if words[0] == "tunelab":
        return words[1:]
    if "tunelab.cli" in words and words[words.index("tunelab.cli") - 1] == "-m":
        return words[words.index("tunelab.cli") + 1:]
    return None


def parsed(argv: list[str], monkeypatch, capsys):
    """What `tunelab ARGV` would run with, parsed exactly as the CLI parses it (nothing runs)."""
    seen = []
    monkeypatch.setattr(tunelab.cli.errors, "run_with_clean_errors", lambda fn, args: seen.append(args) or 0)
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse: an unknown flag, a missing argument, a bad choice
        pytest.fail(f"`tunelab {' '.join(argv)}` does not parse: {capsys.readouterr().err.strip()} (exit {exc.code})")
    assert rc == 0
    return seen[0] if seen else None


@pytest.fixture(scope="module")
def starter(tmp_path_factory) -> Path:
    """`tunelab init`'s config: what CONFIG.yaml stands for in the README."""
    path = tmp_path_factory.mktemp("init") / "my.yaml"
    assert main(["init", str(path)]) == 0
    load_config(path)  # the starter config itself validates
    return path


def check_parses(command: Command, monkeypatch, capsys, starter: Path) -> None:
    argv = tunelab_argv(command)
    args = parsed(argv, monkeypatch, capsys)
    for word in argv:  # the repository files a command names exist
        if word.startswith(("examples/", "benchmarks/")):
            assert (ROOT / word).exists(), f"{command}: {word} does not exist"
    overrides = getattr(args, "overrides", None)
    if overrides:  # every key=value names a real key with a valid value
        config = ROOT / args.config
        if not config.is_file():
            assert args.config in PLACEHOLDER_CONFIGS, f"{command}: which config is {args.config}?"
            config = starter
        load_config(config, overrides)


@pytest.mark.parametrize("command", [c for c in README_COMMANDS + DOCS_COMMANDS if tunelab_argv(c) is not None],
                         ids=lambda c: f"{c.where} {' '.join(c.words[:3])}")
def test_tunelab_command_parses(command, monkeypatch, capsys, starter):
    check_parses(command, monkeypatch, capsys, starter)


def test_the_readme_shows_commands():
    """The extraction itself works: a README without commands would pass everything above."""
    names = {tunelab_argv(c)[0] for c in README_COMMANDS if tunelab_argv(c)}
    assert {"train", "eval", "forgetting", "compare", "init", "power", "demo"} <= names
    assert any(c.words[:2] == ("accelerate", "launch") for c in README_COMMANDS)


def test_every_subcommand_the_readme_names_has_help(monkeypatch, capsys):
    names = {argv[0] for c in README_COMMANDS if (argv := tunelab_argv(c)) and argv and not argv[0].startswith("-")}
    assert names <= set(COMMANDS), f"the README names commands tunelab lacks: {sorted(names - set(COMMANDS))}"
    for name in sorted(names):
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0 and "usage: tunelab" in capsys.readouterr().out, name


def test_cheap_readme_commands_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "predictions.jsonl").write_text(
        '{"prediction": "the cat sat on the mat", "references": ["the cat sat on a mat"]}\n'
        '{"prediction": "a dog", "references": ["the dog"]}\n', encoding="utf-8")
    cheap = {"init", "power", "models", "score"}
    ran = []
    for command in fenced_commands(README):
        argv = tunelab_argv(command)
        if argv and argv[0] in cheap and argv not in ran:  # `tunelab init my.yaml` is shown twice
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse refused it
                rc = exc.code
            assert rc == 0, f"{command}: exit {rc}: {capsys.readouterr().err}"
            ran.append(argv)
    assert cheap <= {argv[0] for argv in ran}
    assert load_config(tmp_path / "my.yaml")  # the config `tunelab init my.yaml` wrote
    assert (tmp_path / "scores.json").exists()


def test_readme_data_preview_prints_what_the_readme_shows(smollm2_dir, monkeypatch, capsys):
    """`tunelab data preview examples/preview.yaml` runs, and the output the README shows under it
    (apart from its `...` cuts) is what it prints. smollm2_dir: the tokenizer it loads, converted once."""
    text = README.read_text(encoding="utf-8")
    shown = text.split("`tunelab data preview examples/preview.yaml`", 1)[1].split("```", 2)[1]
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    assert main(["data", "preview", "examples/preview.yaml"]) == 0
    printed = {line.rstrip() for line in capsys.readouterr().out.splitlines()}
    missing = [line for line in shown.strip("\n").splitlines()
               if line.strip() != "..." and line.rstrip() not in printed]
    assert not missing, f"README lines `tunelab data preview` no longer prints: {missing}"


def _flags(words) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("--")]


def test_accelerate_and_torchrun_flags_exist():
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.run import get_args_parser

    # the flags each parser accepts (argparse keeps them there); values are placeholders (HOST, M)
    known = {"accelerate": set(launch_command_parser()._option_string_actions),
             "torchrun": set(get_args_parser()._option_string_actions)}
    checked = 0
    for command in README_COMMANDS + DOCS_COMMANDS:
        program = command.words[0]
        if program in known:
            own = command.words[: command.words.index("-m")] if "-m" in command.words else command.words
            unknown = [f for f in _flags(own) if f not in known[program]]
            assert not unknown, f"{command}: {program} has no {unknown}"
            checked += 1
    assert checked >= 3


def test_make_targets_and_pip_extras_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w.-]+):", makefile, re.M))
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                 ["optional-dependencies"])
    for command in README_COMMANDS + DOCS_COMMANDS:
        if command.words[0] == "make":
            assert set(command.words[1:]) <= targets, f"{command}: no such make target"
        if command.words[0] == "python" and len(command.words) > 1 and command.words[1].endswith(".py"):
            assert (ROOT / command.words[1]).is_file(), f"{command}: no such script"
    for path in [README, *DOCS]:
        for names in re.findall(r"tunelab\[([\w,-]+)\]", path.read_text(encoding="utf-8")):
            assert set(names.split(",")) <= extras, f"{path.name}: pip extra tunelab[{names}] does not exist"
    # the extras the README's install block lists in its comment
    listed = README.read_text(encoding="utf-8").split("# extras:", 1)[1].split("\n", 2)[:2]
    named = re.findall(r"(\w+)\s*(?:\([^)]*\))?\s*(?:,|$)", re.sub(r"\s*#\s*", " ", " ".join(listed)).strip())
    assert len(named) >= 5 and set(named) <= extras, (named, extras)
