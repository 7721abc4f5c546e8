"""`tunelab demo`: the offline quickstart (tunelab.experiments.demo tells the story)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and data order (default 0)")
    parser.add_argument("--output", default="runs", help="parent folder of the demo folder (default runs/)")
    parser.add_argument("--quick", action="store_true", help="tiny step counts and eval sizes: checks the wiring, "
                        "the numbers mean nothing")
    parser.add_argument("--no-full", dest="full", action="store_false",
                        help="skip the full fine-tuning run (the slowest phase)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train every system with N training seeds (seed, seed+1, ...; the split stays "
                        "--seed's) and compare them over their seeds; each extra seed adds about 8 minutes "
                        "on a 2-core CPU (default 1)")
    # For tests: swap the embedded model for another one (e.g. a tiny random Llama folder).
    parser.add_argument("--model", default="smollm2-135m-instruct", help=argparse.SUPPRESS)


def run(args) -> int:
    from tunelab.experiments.demo import run_demo

    run_demo(seed=args.seed, output=args.output, quick=args.quick, model=args.model, full_finetune=args.full,
             seeds=args.seeds)
    return 0
