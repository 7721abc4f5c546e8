"""The engine behind `tunelab score`: read prediction records, score them, add CIs, compare two.

Records (one JSON object per line):
  text metrics     {"prediction": str, "references": [str|null, ...]}  or  {"prediction": str, "reference": str}
  classification   {"prediction": str, "label": str}
A null inside "references" is a missing reference (BLEU/chrF treat it as sacrebleu does; ROUGE,
exact match and token F1 ignore it); at least one reference must be a string.

Scoring is one loop over scoring units (units.py; the protocol in base.py), in the order of
SCORE_UNITS, so the JSON keys come in the same order whatever order the metrics were asked in.
Corpus numbers: ROUGE, exact match, token F1 and accuracy are means over records with a
percentile bootstrap CI; corpus BLEU and chrF (as sacrebleu) and macro P/R/F1 and weighted F1
(classification_statistics) are computed from summed per-record statistics, and their CI resamples
records and recomputes the corpus score. Every CI uses the same resampled records (same seed) and
exactly `bootstrap` of them. ROUGE results carry a signature (rouge_signature). Per record: ROUGE
P/R/F, sentence BLEU (sacrebleu's sentence_bleu: effective order, same tokenizer and smoothing),
sentence chrF, exact match, token F1, and for classification the mapped label (None when the
output could not be mapped: counted wrong).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.metrics.base import Bootstrap, Records, Scored, Unit
from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.gc_paused import gc_paused
from tunelab.metrics.units import DEFAULT_ROUGE_TYPES, UNITS
from tunelab.metrics.vocabulary import SCORE_UNITS

TEXT_METRICS = tuple(u for u in SCORE_UNITS if u != "classification")  # the units that read references
METRICS = SCORE_UNITS
__all__ = ["DEFAULT_ROUGE_TYPES", "METRICS", "TEXT_METRICS", "compare_records", "make_units", "parse_metrics",
           "read_score_file", "score_records", "score_units", "validate_records"]


def _type_name(value) -> str:
    return {str: "string", list: "list", dict: "object", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def read_score_file(path: str | Path) -> tuple[list[dict], list[int]]:
    """A `tunelab score` input file: its JSONL records and their 1-based line numbers (blank
    lines skipped); every error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MetricInputError(f"{path}: no such file")
    records, lines = [], []
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MetricInputError(f"{path}:{line_no}: not valid UTF-8 ({exc.reason})") from None
            if not text.strip():
                continue
            try:
                record = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise MetricInputError(f"{path}:{line_no}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise MetricInputError(f"{path}:{line_no}: expected a JSON object, got {_type_name(record)}")
            records.append(record)
            lines.append(line_no)
    if not records:
        raise MetricInputError(f"{path}: no records")
    return records, lines


def _where(source, line_numbers, i) -> str:
    line = line_numbers[i] if line_numbers else i + 1
    return f"{source or '<records>'}:{line}"


def validate_records(records, metrics, source=None, line_numbers=None) -> Records:
    """Check every record for the fields `metrics` read; errors name the file and line."""
    text = any(m in TEXT_METRICS for m in metrics)
    classification = "classification" in metrics
    predictions, references, labels = [], [], []
    for i, record in enumerate(records):
        where = _where(source, line_numbers, i)
        if not isinstance(record, dict):
            raise MetricInputError(f"{where}: expected a JSON object, got {_type_name(record)}")
        if "prediction" not in record:
            raise MetricInputError(f"{where}: field 'prediction' is missing")
        prediction = record["prediction"]
        if not isinstance(prediction, str):
            raise MetricInputError(f"{where}: field 'prediction' must be a string, got {_type_name(prediction)}")
        predictions.append(prediction)
        if text:
            references.append(_record_references(record, where))
        if classification:
            if "label" not in record:
                raise MetricInputError(f"{where}: field 'label' is missing (needed by the classification metric)")
            if not isinstance(record["label"], str):
                raise MetricInputError(f"{where}: field 'label' must be a string, got {_type_name(record['label'])}")
            labels.append(record["label"])
    return Records(predictions, references, labels if classification else None,
                   lambda i: _where(source, line_numbers, i))


def _record_references(record, where) -> list[str | None]:
    if "references" in record and "reference" in record:
        raise MetricInputError(f"{where}: give either field 'references' or 'reference', not both")
    if "reference" in record:
        ref = record["reference"]
        if not isinstance(ref, str):
            raise MetricInputError(f"{where}: field 'reference' must be a string, got {_type_name(ref)}")
        return [ref]
    if "references" not in record:
        raise MetricInputError(f"{where}: field 'references' is missing (or give 'reference')")
    refs = record["references"]
    if not isinstance(refs, list):
        raise MetricInputError(f"{where}: field 'references' must be a list of strings, got {_type_name(refs)}")
    for k, ref in enumerate(refs):
        if ref is not None and not isinstance(ref, str):
            raise MetricInputError(f"{where}: field 'references[{k}]' must be a string or null, got {_type_name(ref)}")
    if not any(isinstance(ref, str) for ref in refs):
        raise MetricInputError(f"{where}: field 'references' has no reference (use \"\" for an empty one)")
    return refs


def parse_metrics(metrics) -> list[str]:
    """`--metrics` (a comma list or a list of unit names) -> the unit names, each once."""
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise MetricInputError(f"unknown metric(s) {unknown or metrics}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(metrics))


def make_units(metrics, *, rouge_mode: str = "rouge-score", rouge_types=DEFAULT_ROUGE_TYPES,
               use_stemmer: bool = False, rouge_tokenizer: str = "default", rouge_options: dict | None = None,
               bleu_tokenize: str = "13a", bleu_smooth: str = "exp", bleu_smooth_value: float | None = None,
               bleu_lowercase: bool = False, chrf_word_order: int = 0, labels=None,
               label_rule: str = "unique") -> list[Unit]:
    """The units of `metrics` (parse_metrics names), in SCORE_UNITS order, from `tunelab score`'s options."""
    metrics = parse_metrics(metrics)
    types = [t.strip() for t in rouge_types.split(",")] if isinstance(rouge_types, str) else list(rouge_types)
    settings = {
        "rouge": dict(types=types, mode=rouge_mode, use_stemmer=use_stemmer, tokenizer=rouge_tokenizer,
                      options=dict(rouge_options or {})),
        "bleu": dict(tokenize=bleu_tokenize, smooth_method=bleu_smooth, smooth_value=bleu_smooth_value,
                     lowercase=bleu_lowercase),
        "chrf": dict(word_order=chrf_word_order),
        "classification": dict(labels=labels, label_rule=label_rule),
    }
    return [UNITS[name](**settings.get(name, {})) for name in SCORE_UNITS if name in metrics]


@gc_paused()  # ~10 small dicts per record; see gc_paused.py
def score_units(records: Records, units: list[Unit], bootstrap: Bootstrap, progress=None) -> list[Scored]:
    """Every unit's result on the same checked records, in the units' order."""
    if bootstrap.on:
        from tunelab.metrics.stats import _check_confidence

        _check_confidence(bootstrap.confidence)
    results = []
    for unit in units:
        if progress is not None:
            progress(f"{unit.name}: {records.n} records")
        results.append(unit.score(records, bootstrap))
    return results


@gc_paused()  # the per-record dicts of every unit; see gc_paused.py
def _score(records, metrics, source, line_numbers, bootstrap, seed, confidence, progress, settings):
    # score_records' work, with the checked records and the units' results kept for compare_records
    units = make_units(metrics, **settings)
    if not records:
        raise MetricInputError(f"{source or '<records>'}: no records")
    checked = validate_records(records, [unit.name for unit in units], source, line_numbers)
    boot = Bootstrap(bootstrap, seed, confidence)
    results = score_units(checked, units, boot, progress)
    corpus: dict = {"n": checked.n}
    per_record: list[dict] = [{"index": i} for i in range(checked.n)]
    for scored in results:
        corpus.update(scored.corpus)
        for row, entry in zip(per_record, scored.per_record):
            row.update(entry)
    if boot.on:
        corpus["bootstrap"] = boot.describe()
    return corpus, per_record, checked, results


def score_records(records: list[dict], metrics, *, source: str | None = None, line_numbers: list[int] | None = None,
                  bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95, progress=None,
                  **settings) -> tuple[dict, list[dict]]:
    """Score records: (corpus results, one dict per record in input order). See module docstring.

    settings: make_units' keywords (rouge_mode, rouge_types, bleu_smooth, labels, ...)."""
    corpus, per_record, _, _ = _score(records, metrics, source, line_numbers, bootstrap, seed, confidence,
                                      progress, settings)
    return corpus, per_record


def compare_records(records_a, records_b, metrics, *, sources=("A", "B"), line_numbers=(None, None),
                    permutations: int = 10000, **options) -> dict:
    """Score two systems on the same records and test every metric for a difference (a - b).

    Test keys: "<rouge type>.f1", "bleu", "chrf", "exact_match", "token_f1", "accuracy", "macro_f1".
    Each entry's "test" is the one test tunelab reports for that metric (metrics/paired.py: exact
    McNemar for 0/1 scores, else the paired bootstrap, with a CI that agrees with its p and the
    minimum detectable effect); the paired bootstrap, approximate randomisation and McNemar
    results beside it are listed for readers who want them."""
    if len(records_a) != len(records_b):
        raise MetricInputError(
            f"{sources[0]} has {len(records_a)} records but {sources[1]} has {len(records_b)}: "
            "a paired comparison needs the same records in the same order"
        )
    bootstrap = options.pop("bootstrap", 1000)
    if not bootstrap or bootstrap < 1:
        raise MetricInputError("a paired comparison needs bootstrap >= 1 resamples")
    seed, confidence = options.pop("seed", 0), options.pop("confidence", 0.95)
    progress = options.pop("progress", None)
    corpus_a, _, checked_a, results_a = _score(records_a, metrics, sources[0], line_numbers[0], bootstrap, seed,
                                               confidence, progress, options)
    corpus_b, _, checked_b, results_b = _score(records_b, metrics, sources[1], line_numbers[1], bootstrap, seed,
                                               confidence, progress, options)
    _check_same_records(checked_a, checked_b)
    tests = {}
    for scored_a, scored_b in zip(results_a, results_b):
        for key, paired_a in scored_a.paired.items():
            tests[key] = _paired_tests(key, paired_a, scored_b.paired[key], bootstrap, seed, confidence, permutations)
    return {"n": corpus_a["n"], "a": {"source": sources[0], "corpus": corpus_a},
            "b": {"source": sources[1], "corpus": corpus_b}, "tests": tests}


def _check_same_records(a: Records, b: Records) -> None:
    # a paired test of two systems needs the same references and gold label per record
    for i, (ra, rb) in enumerate(zip(a.references, b.references)):
        if ra != rb:
            raise MetricInputError(f"{b.where(i)}: references differ from {a.where(i)}; "
                                   "a paired comparison needs the same records in the same order")
    for i, (ga, gb) in enumerate(zip(a.gold or [], b.gold or [])):
        if ga != gb:
            raise MetricInputError(f"{b.where(i)}: field 'label' is {gb!r}, but {ga!r} at {a.where(i)}; "
                                   "a paired comparison needs the same records in the same order")


def _paired_tests(key, a, b, bootstrap, seed, confidence, permutations) -> dict:
    """One key's paired tests: a mean over records or a corpus statistic (Paired.corpus)."""
    from tunelab.metrics import paired as P
    from tunelab.metrics import stats as S

    entry = {"a": a.score(), "b": b.score()}
    if a.corpus is None:
        entry["paired_bootstrap"] = S.paired_bootstrap(a.values, b.values, bootstrap, seed, confidence)
        entry["approx_randomization"] = S.approx_randomization(a.values, b.values, permutations, seed)
        if key == "accuracy":
            entry["mcnemar"] = S.mcnemar(a.values.astype(bool), b.values.astype(bool))
        entry["test"] = P.paired_test(a.values, b.values, bootstrap, seed, confidence)
    else:
        fn = a.corpus
        entry["paired_bootstrap"] = S.paired_bootstrap_statistic(a.values, b.values, fn, bootstrap, seed, confidence)
        entry["approx_randomization"] = S.approx_randomization_statistic(a.values, b.values, fn, permutations, seed)
        entry["test"] = P.paired_test_statistic(a.values, b.values, fn, bootstrap, seed, confidence)
    entry["diff"] = entry["a"] - entry["b"]
    return entry
