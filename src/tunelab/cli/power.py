"""`tunelab power`: plan a test set's size, or find the smallest change a test can see.

0/1 metrics (--discordance): the exact McNemar test's exact power. Continuous and corpus metrics
(--sd or --se): the z-based planning formula that the paired bootstrap follows. Method and sources:
tunelab.metrics.power."""

from __future__ import annotations

import argparse
import json
import math

DISCORDANCE_HELP = (
    "0/1 metric (accuracy, exact match): the share of examples on which the two systems disagree "
    "(one right, the other wrong). From a previous comparison: (b + c) / n, with McNemar's b and c "
    "and the task's n in forgetting.json (each task's 'mcnemar' and 'n') or tunelab score --compare's output"
)
SD_HELP = (
    "continuous metric (token F1, ROUGE): the standard deviation of the per-example differences "
    "(tuned - base). From a previous comparison's paired 95%% CI and n (compare.json, forgetting.json): "
    "sd ~ sqrt(n) * (hi - lo) / 3.92"
)
SE_HELP = (
    "corpus metric (BLEU, chrF): the standard error of the difference, i.e. the bootstrap standard "
    "deviation of the paired difference; from a paired 95%% CI: (hi - lo) / 3.92. Gives the MDE at that n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples: tunelab power --n 112 --discordance 0.15 (the smallest change 112 examples can "
                     "see); tunelab power --drop 0.05 --discordance 0.15 (the examples a 5-point change needs)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--n", type=int, help="examples in the test set: print the minimum detectable effect")
    size.add_argument("--drop", type=float, metavar="CHANGE",
                      help="the change to detect, in the metric's units (0.05 = 5 points of accuracy; "
                           "BLEU points with --scale 0-100): print the examples needed")
    spread = parser.add_mutually_exclusive_group()
    spread.add_argument("--discordance", type=float, help=DISCORDANCE_HELP)
    spread.add_argument("--sd", type=float, help=SD_HELP)
    spread.add_argument("--se", type=float, help=SE_HELP)
    parser.add_argument("--scale", choices=["0-1", "0-100"], default=None,
                        help="the metric's scale for --sd/--se (0-100: BLEU, chrF; points are then the "
                             "metric's own). Default 0-1, where a point is 0.01")
    parser.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _validate(args) -> None:
    from tunelab.cli.errors import UserError

    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if not args.alpha < args.power < 1:
        raise UserError(f"--power must be between --alpha ({args.alpha}) and 1, got {args.power}")
    if args.discordance is None and args.sd is None and args.se is None:
        raise UserError("give --discordance (0/1 metric), --sd (continuous metric) or --se (corpus metric)")
    if args.se is not None:
        if args.n is not None or args.drop is not None:
            raise UserError("--se already holds n: give it alone (or --n with --sd)")
        if not (args.se > 0 and math.isfinite(args.se)):
            raise UserError(f"--se must be a positive number, got {args.se}")
        return
    if args.n is None and args.drop is None:
        raise UserError("give --n (print the smallest change it can see) or --drop (print the n it needs)")
    if args.n is not None and not 1 <= args.n <= 10**8:
        raise UserError(f"--n must be between 1 and 100,000,000, got {args.n}")
    if args.discordance is not None:
        if args.scale == "0-100":
            raise UserError("--discordance is for 0/1 metrics; --scale 0-100 goes with --sd or --se")
        if not 0 < args.discordance <= 1:
            raise UserError(f"--discordance must be in (0, 1], got {args.discordance}")
        if args.drop is not None and not 0 < abs(args.drop) <= 1:
            raise UserError(f"--drop must be a non-zero share of at most 1 (0.05 = 5 points), got {args.drop}")
    else:
        if not (args.sd > 0 and math.isfinite(args.sd)):
            raise UserError(f"--sd must be a positive number, got {args.sd}")
        if args.drop is not None and not (args.drop != 0 and math.isfinite(args.drop)):
            raise UserError(f"--drop must be a non-zero number, got {args.drop}")


def plan(args) -> dict:
    """The answer as a dict (what --json prints)."""
    from tunelab.metrics import power as P

    scale = args.scale or "0-1"
    out = {"alpha": args.alpha, "power": args.power, "scale": scale}
    if args.discordance is not None:
        out.update(test="exact McNemar", discordance=args.discordance)
        if args.n is not None:
            mde = P.mde_mcnemar(args.n, args.discordance, args.alpha, args.power)
            out.update(n=args.n, mde=mde, mde_points=None if mde is None else P.to_points(mde))
        else:
            drop = abs(args.drop)
            n = P.n_for_mcnemar(drop, args.discordance, args.alpha, args.power)
            out.update(drop=drop, n=n, achieved_power=P.mcnemar_power(n, max(args.discordance, drop), drop, args.alpha),
                       n_normal_approximation=P.n_for_mcnemar_normal(drop, args.discordance, args.alpha, args.power))
        return out
    out["test"] = "paired bootstrap (z-based planning)"
    if args.se is not None:
        mde = P.mde_mean(args.se, args.alpha, args.power)
        out.update(se=args.se, mde=mde, mde_points=P.to_points(mde, scale))
    elif args.n is not None:
        mde = P.mde_mean(args.sd / math.sqrt(args.n), args.alpha, args.power)
        out.update(n=args.n, sd=args.sd, mde=mde, mde_points=P.to_points(mde, scale))
    else:
        out.update(drop=abs(args.drop), sd=args.sd, n=P.n_for_mean(args.drop, args.sd, args.alpha, args.power))
    return out


def _sentence(result: dict) -> str:
    from tunelab.metrics.power import describe_mde, to_points

    setting = f"alpha {result['alpha']:g}, power {result['power']:.0%}"
    if result["test"] == "exact McNemar":
        setting = f"exact McNemar, discordance {result['discordance']:g}, {setting}"
    else:
        spread = f"sd {result['sd']:g}" if "sd" in result else f"se {result['se']:g}"
        setting = f"paired bootstrap, {spread}, {setting}"
    if "mde" in result:
        examples = f"with {result['n']:,} examples " if "n" in result else ""
        return f"{examples}{describe_mde(result['mde'], result['scale'], result['power'])} ({setting})"
    points = to_points(result["drop"], result["scale"])
    text = f"a change of {points:g} points needs {result['n']:,} examples ({setting})"
    if "n_normal_approximation" in result:
        text += f"; Connor's normal approximation says {result['n_normal_approximation']:,}"
    return text


def run(args) -> int:
    _validate(args)
    result = plan(args)
    print(json.dumps(result, indent=2) if args.json else _sentence(result))
    return 0
