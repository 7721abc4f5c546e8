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

Signature (like BLEU's): rouge_signature(nrefs, rouge_types, mode=..., use_stemmer=...,
tokenizer=..., **mode_options) names every option that changes the numbers, e.g.
    nrefs:1|mode:rouge-score|stem:yes|tok:default|types:rouge1,rougeL|impl:tunelab-0.1.0|version:0.1.2
    nrefs:var|mode:rouge155|stem:no|tok:default|alpha:0.5|multiref:A|stop:no|types:rouge2|impl:tunelab-0.1.0|version:1.5.5
`version` is the release of the reference reproduced (rouge-score / ROUGE-1.5.5.pl); `impl` says
that tunelab computed the number; rouge155 mode options left out take their defaults.

tokenizer="unicode" (both modes) keeps letters and digits of every script (NFC, lowercased; Han
and kana one token per character) instead of dropping everything outside [a-z0-9]: a departure
from both references, which score non-Latin text as empty. On ASCII text it changes nothing.
"""

from __future__ import annotations

from tunelab.metrics.gc_paused import gc_paused
from tunelab.metrics.rouge.types import Score, parse_type, to_records

MODES = ("rouge-score", "rouge155")
REFERENCE_VERSIONS = {"rouge-score": "0.1.2", "rouge155": "1.5.5"}  # what each mode is tested against
DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

__all__ = ["rouge", "rouge_arrays", "rouge_signature", "Score", "parse_type", "MODES", "DEFAULT_TYPES"]


@gc_paused()  # a Score per record and type; see metrics/gc_paused.py
def rouge(predictions, references, rouge_types=DEFAULT_TYPES, **options) -> list[dict[str, Score]]:
    """Per-record ROUGE scores (see the module docstring); options as rouge_arrays'."""
    predictions = list(predictions)
    return to_records(rouge_arrays(predictions, references, rouge_types, **options), len(predictions))


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


def rouge_signature(
    nrefs: int | str,
    rouge_types=DEFAULT_TYPES,
    *,
    mode: str = "rouge-score",
    use_stemmer: bool = False,
    tokenizer: str = "default",
    **mode_options,
) -> str:
    """A one-line record of every option behind a ROUGE number (see the module docstring).

    nrefs: references per record (an int, or "var" when it varies). Checks the options as
    rouge_arrays does, so a signature never describes a configuration that cannot run."""
    import inspect

    from tunelab.metrics.bleu import _tunelab_version
    from tunelab.metrics.rouge.tokenize import TOKENIZERS

    if mode not in MODES:
        raise ValueError(f"unknown ROUGE mode {mode!r}; choose one of {MODES}")
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown ROUGE tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")
    types = [rouge_types] if isinstance(rouge_types, str) else list(rouge_types)
    for t in types:
        parse_type(t)
    fields = [f"nrefs:{nrefs}", f"mode:{mode}", f"stem:{'yes' if use_stemmer else 'no'}", f"tok:{tokenizer}"]
    if mode == "rouge-score":
        if mode_options:
            raise ValueError(f"mode 'rouge-score' takes no options, got {sorted(mode_options)}")
    else:
        from tunelab.metrics.rouge.rouge155_mode import score_arrays

        # the defaults are read from the function that applies them, so the two cannot drift
        defaults = {name: param.default for name, param in inspect.signature(score_arrays).parameters.items()
                    if param.kind is inspect.Parameter.KEYWORD_ONLY}
        unknown = sorted(set(mode_options) - defaults.keys())
        if unknown:
            raise ValueError(f"mode 'rouge155' options are {sorted(defaults)}, got {unknown}")
        if use_stemmer:
            raise ValueError("mode 'rouge155' does not support stemming (-m); use mode 'rouge-score'")
        options = {**defaults, **mode_options}
        fields += [f"alpha:{float(options['alpha'])!r}", f"multiref:{options['multi_ref']}",
                   f"stop:{'yes' if options['remove_stopwords'] else 'no'}"]
    fields += [f"types:{','.join(types)}", f"impl:tunelab-{_tunelab_version()}",
               f"version:{REFERENCE_VERSIONS[mode]}"]
    return "|".join(fields)
