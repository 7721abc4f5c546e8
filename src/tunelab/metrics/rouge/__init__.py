"""ROUGE, identical to rouge-score 0.1.2 (default) or to ROUGE-1.5.5 (mode "rouge155"), vectorised.

    rouge(predictions, references, rouge_types=("rouge1", "rouge2", "rougeL", "rougeLsum"),
          *, mode="rouge-score", use_stemmer=False, tokenizer="default", **mode_options)
    -> list[dict[str, Score]]   # one dict per record, input order; Score(precision, recall, fmeasure)
    rouge_arrays(...same arguments...)
    -> dict[str, (precision, recall, fmeasure)]   # numpy arrays, one value per record (faster)

`references` holds one list of reference strings per record.

Type names: "rouge1".."rouge9", "rougeL", "rougeLsum", "rougeW-1.2" (any weight >= 1),
"rougeS4" / "rougeS*" (skip-bigrams with at most 4 / any number of words between them),
"rougeSU4" / "rougeSU*" (the same plus unigrams). In mode rouge155, "rougeL" is ROUGE-1.5.5's
ROUGE-L (summary-level union LCS over sentences) and "rougeLsum" is accepted as the same thing.

Modes (see rouge_score_mode.py and rouge155_mode.py for exactly what is reproduced):
- "rouge-score": rouge-score's tokenizer and Porter stemmer (use_stemmer), score_multi for
  several references (best F per type). W/S/SU with ROUGE-1.5.5 formulas, unrounded.
- "rouge155": ROUGE-1.5.5.pl's per-record `-d` output, R/P/F rounded to 5 decimals and F computed
  from the rounded R and P. Options: alpha (-p, default 0.5), multi_ref "A" (pooled, default) or
  "B" (best), remove_stopwords (-s). Stemming (-m) is not supported in this mode. An empty
  reference scores 0 (the perl script dies on it).

tokenizer="unicode" (both modes) keeps letters and digits of every script (NFC, lowercased; Han
and kana one token per character) instead of dropping everything outside [a-z0-9]: a departure
from both references, which score non-Latin text as empty. On ASCII text it changes nothing.
"""

from __future__ import annotations

from tunelab.metrics.gc_paused import gc_paused
from tunelab.metrics.rouge.types import Score, parse_type, to_records

MODES = ("rouge-score", "rouge155")
DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

__all__ = ["rouge", "rouge_arrays", "Score", "parse_type", "MODES", "DEFAULT_TYPES"]


@gc_paused()  # a Score per record and type; see metrics/gc_paused.py
def rouge(
    predictions,
    references,
    rouge_types=DEFAULT_TYPES,
    *,
    mode: str = "rouge-score",
    use_stemmer: bool = False,
    tokenizer: str = "default",
    **mode_options,
) -> list[dict[str, Score]]:
    """Per-record ROUGE scores (see the module docstring)."""
    predictions = list(predictions)
    arrays = rouge_arrays(predictions, references, rouge_types, mode=mode, use_stemmer=use_stemmer,
                          tokenizer=tokenizer, **mode_options)
    return to_records(arrays, len(predictions))


def rouge_arrays(
    predictions,
    references,
    rouge_types=DEFAULT_TYPES,
    *,
    mode: str = "rouge-score",
    use_stemmer: bool = False,
    tokenizer: str = "default",
    **mode_options,
) -> dict:
    """{type name: (precision, recall, fmeasure) numpy arrays}: rouge()'s numbers, one value
    per record, without building a Score per record and type."""
    predictions = list(predictions)
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(predictions) != len(references):
        raise ValueError(
            f"rouge: {len(predictions)} predictions but {len(references)} reference lists"
        )
    if isinstance(rouge_types, str):
        rouge_types = [rouge_types]
    for t in rouge_types:
        parse_type(t)
    if mode == "rouge-score":
        if mode_options:
            raise ValueError(f"mode 'rouge-score' takes no options, got {sorted(mode_options)}")
        from tunelab.metrics.rouge.rouge_score_mode import score_arrays

        return score_arrays(predictions, references, rouge_types, use_stemmer, tokenizer)
    if mode == "rouge155":
        from tunelab.metrics.rouge.rouge155_mode import score_arrays

        return score_arrays(predictions, references, rouge_types, use_stemmer, tokenizer, **mode_options)
    raise ValueError(f"unknown ROUGE mode {mode!r}; choose one of {MODES}")
