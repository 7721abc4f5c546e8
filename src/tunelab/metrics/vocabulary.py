"""The one vocabulary of metric names, from the scoring units in metrics/ to the reports.

Two kinds of name meet here, and this table is the only place that maps one to the other:
- a *unit* computes one metric family from per-record statistics (units.py, loglikelihood.py) and
  is what `tunelab score --metrics` names: rouge, bleu, chrf, exact_match, token_f1,
  classification; evaluation adds multiple_choice, perplexity and preference;
- a *key* is one reported number: the name a task's `metrics:` list, results.json, compare.json
  and the report use (accuracy, macro_f1, rougeL, bleu, acc_norm, perplexity, ...).
Every key says which unit computes it, whether higher is better and its scale, so config/scoring.py
(which metrics a task may ask for), evaluate/ (which units to run) and report/ (which axis to draw)
read the same facts. Pure data: config imports it, so it must stay free of numpy and of the units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The units in the order they run and appear in `tunelab score` output (its JSON key order).
SCORE_UNITS = ("rouge", "bleu", "chrf", "exact_match", "token_f1", "classification")
ROUGE_KEY = re.compile(r"^rouge([1-9]|L|Lsum|W|S\d*|SU\d*)$")
ROUGE_KEY_HINT = "rouge1..9, rougeL, rougeLsum, rougeW, rougeS4, rougeSU4"


@dataclass(frozen=True)
class Key:
    """One reported number: its name in reports, the unit behind it, direction and scale."""

    name: str
    unit: str
    eval_kind: str  # generate / loglikelihood / perplexity / preference: how the answers it scores are produced
    higher_is_better: bool = True
    scale: str = "0-1"  # "0-1", "0-100" (sacrebleu's scale), or "unbounded" (a count or a loss)
    selectable: bool = True  # False: reported beside another key, never asked for by name
    statistic: bool = False  # True: a corpus statistic of summed per-record statistics, not a mean


# The order within each eval_kind is the order error messages list them in.
KEYS = {key.name: key for key in (
    Key("accuracy", "classification", "generate"),
    Key("macro_f1", "classification", "generate", selectable=False, statistic=True),
    Key("exact_match", "exact_match", "generate"),
    Key("token_f1", "token_f1", "generate"),
    Key("bleu", "bleu", "generate", scale="0-100", statistic=True),
    Key("chrf", "chrf", "generate", scale="0-100", statistic=True),
    Key("acc", "multiple_choice", "loglikelihood"),
    Key("acc_norm", "multiple_choice", "loglikelihood"),
    Key("acc_bytes", "multiple_choice", "loglikelihood"),
    Key("token_nll", "perplexity", "perplexity", higher_is_better=False, scale="unbounded", statistic=True),
    Key("perplexity", "perplexity", "perplexity", higher_is_better=False, scale="unbounded", statistic=True),
    Key("bits_per_byte", "perplexity", "perplexity", higher_is_better=False, scale="unbounded", statistic=True),
    # classification's third number, after the others so that keys_where keeps its old order
    Key("unmapped", "classification", "generate", higher_is_better=False, scale="unbounded", selectable=False),
    # preference pairs: the policy's own log-prob of the chosen answer above the rejected one's
    # (metrics/loglikelihood.py's Preference); means over pairs, the margin in nats
    Key("reward_accuracy", "preference", "preference"),
    Key("reward_margin", "preference", "preference", scale="unbounded"),
)}


def key(name: str) -> Key | None:
    """The Key of a reported name (any ROUGE type is the rouge unit's), or None if unknown."""
    if name in KEYS:
        return KEYS[name]
    if ROUGE_KEY.match(name):
        return Key(name, "rouge", "generate")
    return None


def selectable(eval_kind: str) -> tuple[str, ...]:
    """The keys a task of this eval_kind may list by name (ROUGE types besides, see ROUGE_KEY)."""
    return tuple(k.name for k in KEYS.values() if k.eval_kind == eval_kind and k.selectable)


def keys_where(**facts) -> tuple[str, ...]:
    """Keys whose fields equal `facts`, e.g. keys_where(scale="0-100")."""
    return tuple(k.name for k in KEYS.values() if all(getattr(k, f) == v for f, v in facts.items()))


def units_for(names) -> dict[str, list[str]]:
    """{unit: the asked-for keys it reports} for a task's metric names, in SCORE_UNITS order.
    Names that are no selectable key are left out (config/scoring.py's check_scoring rejects
    them before any model runs)."""
    wanted: dict[str, list[str]] = {}
    for name in names:
        found = key(name)
        if found is not None and found.selectable:
            wanted.setdefault(found.unit, []).append(name)
    order = [*SCORE_UNITS, "multiple_choice", "perplexity", "preference"]
    return {unit: wanted[unit] for unit in order if unit in wanted}
