"""`tunelab init [PATH]`: write a commented starter config (default tunelab.yaml) to edit and train."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", default="tunelab.yaml", help="where to write it (default tunelab.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args) -> int:
    import sys
    from importlib.resources import files
    from pathlib import Path

    from tunelab.config.base import UserError
    from tunelab.files import write_text

    path = Path(args.path)
    if path.exists() and not args.force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    write_text(path, (files("tunelab.cli") / "templates" / "starter.yaml").read_text(encoding="utf-8"))
    print(f"wrote {path}: point data.tasks at your file, then: tunelab data preview {path} && "
          f"tunelab train {path}", file=sys.stderr)
    return 0
