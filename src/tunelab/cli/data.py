"""`tunelab data preview CONFIG [key=value ...]`: see the prompts, splits and mixture before training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class _IntermixedParser(argparse.ArgumentParser):
    """Lets `key=value` overrides come after options (`preview CFG --n 2 seed=3`), which plain
    argparse rejects once an option has split the positionals."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_IntermixedParser)
    p = sub.add_parser("preview", help="counts, split sizes, mixture rates, token lengths and rendered examples",
                       description="Prepare the data of CONFIG exactly as training will and show it.")
    p.add_argument("config", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.add_argument("--n", type=int, default=3, help="examples shown per task (default 3)")
    p.add_argument("--split", default="train", choices=["train", "validation", "test"])
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the summary and examples as JSON")
    p.add_argument("--plain", action="store_true",
                   help="plain-text markers instead of colours (the default when not on a terminal)")


def load_tokenizer(cfg):
    from transformers import AutoTokenizer

    from tunelab.cli.errors import UserError
    from tunelab.models import ModelResolutionError, resolve_model

    try:
        path = resolve_model(cfg.model.name)
    except ModelResolutionError as exc:
        raise UserError(str(exc)) from None
    from tunelab.config import ConfigError
    from tunelab.models.load import loading_errors

    try:
        with loading_errors(path, cfg.model, "tokenizer"):  # remote code: the error names the opt-in key
            return AutoTokenizer.from_pretrained(path, revision=cfg.model.revision,
                                                 trust_remote_code=cfg.model.trust_remote_code)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())  # one line on stderr
        raise UserError(f"model '{cfg.model.name}': cannot load its tokenizer: {message}") from None


def run(args) -> int:
    from rich.console import Console

    from tunelab.cli.errors import UserError
    from tunelab.config import load_config
    from tunelab.data import prepare
    from tunelab.data.preview import preview_summary, print_preview

    if getattr(args, "data_command", None) != "preview":
        raise UserError("choose a data subcommand: tunelab data preview CONFIG")
    if args.n < 0:
        raise UserError("--n must be 0 or more")
    cfg = load_config(args.config, args.overrides)
    console = Console(soft_wrap=True)
    plain = args.plain or not console.is_terminal
    if plain:  # logs and pipes: wide enough for the tables, no colour codes
        console = Console(soft_wrap=True, width=160, no_color=True, highlight=False)
    err = Console(stderr=True)
    if plain:
        def say(message: str) -> None:
            print(f"preparing data: {message}", file=sys.stderr, flush=True)

        say(f"loading the tokenizer of {cfg.model.name}")
        tokenizer = load_tokenizer(cfg)
        prepared = prepare(cfg, tokenizer, progress=say)
    else:
        with err.status(f"loading the tokenizer of {cfg.model.name} ...") as status:
            tokenizer = load_tokenizer(cfg)
            prepared = prepare(cfg, tokenizer, progress=lambda m: status.update(f"preparing data: {m} ..."))
    summary = preview_summary(prepared, tokenizer, split=args.split, n=args.n)
    summary["config"] = str(args.config)
    summary["model"] = cfg.model.name
    summary["config_resolved"] = json.loads(cfg.model_dump_json())
    console.print(f"Config {args.config}; model {cfg.model.name}; max_length {cfg.data.max_length}; "
                  f"over-length policy {cfg.data.overlength}; seed {prepared.seed}", markup=False, highlight=False)
    print_preview(summary, console, plain=plain)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        from tunelab.files import write_json

        write_json(out, summary, indent=2)
        console.print(f"wrote {out}", markup=False, highlight=False)
    return 0
