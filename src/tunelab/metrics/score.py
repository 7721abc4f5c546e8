"""The engine behind `tunelab score`: read prediction records, score them, add CIs, compare two.

Records (one JSON object per line):
  text metrics     {"prediction": str, "references": [str|null, ...]}  or  {"prediction": str, "reference": str}
  classification   {"prediction": str, "label": str}
A null inside "references" is a missing reference (BLEU/chrF treat it as sacrebleu does; ROUGE,
exact match and token F1 ignore it); at least one reference must be a string.

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

import numpy as np

from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.gc_paused import gc_paused

TEXT_METRICS = ("rouge", "bleu", "chrf", "exact_match", "token_f1")
METRICS = (*TEXT_METRICS, "classification")
DEFAULT_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _type_name(value) -> str:
    return {str: "string", list: "list", dict: "object", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def load_records(path: str | Path) -> tuple[list[dict], list[int]]:
    """JSONL records and their 1-based line numbers (blank lines skipped)."""
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


def validate_records(records, metrics, source=None, line_numbers=None):
    """Check every record; return (predictions, references per record, gold labels or None)."""
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
    return predictions, references, labels if classification else None


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
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise MetricInputError(f"unknown metric(s) {unknown or metrics}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(metrics))


def _nrefs(nrefs_seen: set[int]):
    return next(iter(nrefs_seen)) if len(nrefs_seen) == 1 else "var"


def _report(progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _mean_entry(values: np.ndarray, ci_of, key="mean") -> dict:
    entry = {key: float(values.mean())}
    ci = ci_of(values)
    if ci is not None:
        entry["ci"] = ci
    return entry


@gc_paused()  # ~10 small dicts per record; see gc_paused.py
def score_records(
    records: list[dict],
    metrics,
    *,
    source: str | None = None,
    line_numbers: list[int] | None = None,
    rouge_mode: str = "rouge-score",
    rouge_types=DEFAULT_ROUGE_TYPES,
    use_stemmer: bool = False,
    rouge_tokenizer: str = "default",
    rouge_options: dict | None = None,
    bleu_tokenize: str = "13a",
    bleu_smooth: str = "exp",
    bleu_smooth_value: float | None = None,
    bleu_lowercase: bool = False,
    chrf_word_order: int = 0,
    labels=None,
    label_rule: str = "unique",
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress=None,
    _keep_statistics: bool = False,
) -> tuple[dict, list[dict]]:
    """Score records: (corpus results, one dict per record in input order). See module docstring."""
    from tunelab.metrics import stats as S

    metrics = parse_metrics(metrics)
    if not records:
        raise MetricInputError(f"{source or '<records>'}: no records")
    predictions, references, gold = validate_records(records, metrics, source, line_numbers)
    n = len(predictions)
    present = [[r for r in refs if r is not None] for refs in references]
    if bootstrap and bootstrap > 0:
        S._check_confidence(confidence)

    def ci_of(values):
        if not bootstrap or bootstrap <= 0:
            return None
        return list(S.bootstrap_ci(values, bootstrap, confidence, seed))

    def ci_of_statistic(statistics, score_fn):
        if not bootstrap or bootstrap <= 0:
            return None
        return list(S.percentile_interval(S.bootstrap_statistic(statistics, score_fn, bootstrap, seed), confidence))

    corpus: dict = {"n": n}
    per_record: list[dict] = [{"index": i} for i in range(n)]
    kept: dict = {}  # per-record values and statistics for compare_records

    if "rouge" in metrics:
        _report(progress, f"rouge: {n} records")
        # The resamples for ROUGE's intervals are drawn in the background while ROUGE runs.
        resamples = S.prefetch_resample_counts(n, bootstrap, seed) if bootstrap and bootstrap > 0 else None
        from tunelab.metrics.rouge import rouge_arrays, rouge_signature

        types = [t.strip() for t in rouge_types.split(",")] if isinstance(rouge_types, str) else list(rouge_types)
        try:
            # first: it also rejects option names the chosen mode does not take, before any work
            signature = rouge_signature(_nrefs({len(refs) for refs in present}), types, mode=rouge_mode,
                                        use_stemmer=use_stemmer, tokenizer=rouge_tokenizer,
                                        **(rouge_options or {}))
            arrays = rouge_arrays(predictions, present, types, mode=rouge_mode, use_stemmer=use_stemmer,
                                  tokenizer=rouge_tokenizer, **(rouge_options or {}))
        except MetricInputError:
            raise
        except ValueError as exc:  # the rouge package reports bad options as ValueError
            raise MetricInputError(f"rouge: {exc}") from None
        # Every record's (P, R, F) per type in one matrix: one set of resamples serves every CI.
        values = np.stack([np.stack(arrays[t], axis=1) for t in types], axis=1).reshape(n, len(types), 3)
        cis = None
        if bootstrap and bootstrap > 0:
            cis = S.bootstrap_cis(values.reshape(n, -1), bootstrap, confidence, seed, counts=resamples)
            cis = cis.reshape(len(types), 3, 2)
        for k, t in enumerate(types):
            p, r, f = values[:, k, 0], values[:, k, 1], values[:, k, 2]
            entry = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean()),
                     "signature": signature}
            if cis is not None:
                entry.update(precision_ci=cis[k, 0].tolist(), recall_ci=cis[k, 1].tolist(), f1_ci=cis[k, 2].tolist())
            corpus[t] = entry
            kept[f"{t}.f1"] = ("mean", f)
            for i, (pi, ri, fi) in enumerate(values[:, k].tolist()):
                per_record[i][t] = {"precision": pi, "recall": ri, "f1": fi}
        corpus["rouge_signature"] = signature

    if "bleu" in metrics:
        _report(progress, f"bleu: {n} records")
        from tunelab.metrics import bleu as B

        options = dict(smooth_method=bleu_smooth, smooth_value=bleu_smooth_value)
        rows, nrefs_seen = B.segment_statistics(predictions, references, tokenize=bleu_tokenize, lowercase=bleu_lowercase)
        result = B.score_from_statistics([sum(column) for column in zip(*rows)], **options)
        result.signature = B.bleu_signature(_nrefs(nrefs_seen), tokenize=bleu_tokenize,
                                            lowercase=bleu_lowercase, **options)
        statistics = np.array(rows, dtype=float)

        def bleu_scores(summed: np.ndarray) -> np.ndarray:
            return np.array([B.score_from_statistics(list(row), **options).score for row in summed])

        corpus["bleu"] = result.to_dict()
        ci = ci_of_statistic(statistics, bleu_scores)
        if ci is not None:
            corpus["bleu"]["score_ci"] = ci
        kept["bleu"] = ("statistic", statistics, bleu_scores)
        for i in range(n):
            per_record[i]["bleu"] = B.score_from_statistics(list(rows[i]), effective_order=True, **options).score

    if "chrf" in metrics:
        _report(progress, f"chrf: {n} records")
        from tunelab.metrics import chrf as C

        rows, nrefs_seen = C.segment_statistics(predictions, references, word_order=chrf_word_order)
        order = 6 + chrf_word_order
        result = C.CHRFScore(C.f_score([sum(column) for column in zip(*rows)], order), 6, chrf_word_order, 2,
                             C.chrf_signature(_nrefs(nrefs_seen), word_order=chrf_word_order))
        statistics = np.array(rows, dtype=float)

        def chrf_scores(summed: np.ndarray) -> np.ndarray:
            return np.array([C.f_score(list(row), order) for row in summed])

        corpus["chrf"] = result.to_dict()
        ci = ci_of_statistic(statistics, chrf_scores)
        if ci is not None:
            corpus["chrf"]["score_ci"] = ci
        kept["chrf"] = ("statistic", statistics, chrf_scores)
        for i in range(n):
            per_record[i]["chrf"] = C.f_score(rows[i], order)

    if "exact_match" in metrics:
        _report(progress, f"exact_match: {n} records")
        from tunelab.metrics.exact_match import exact_match

        values = np.array([exact_match(p, refs) for p, refs in zip(predictions, present)])
        corpus["exact_match"] = _mean_entry(values, ci_of)
        kept["exact_match"] = ("mean", values)
        for i in range(n):
            per_record[i]["exact_match"] = float(values[i])

    if "token_f1" in metrics:
        _report(progress, f"token_f1: {n} records")
        from tunelab.metrics.token_f1 import token_f1

        values = np.array([token_f1(p, refs) for p, refs in zip(predictions, present)])
        corpus["token_f1"] = _mean_entry(values, ci_of)
        kept["token_f1"] = ("mean", values)
        for i in range(n):
            per_record[i]["token_f1"] = float(values[i])

    if "classification" in metrics:
        _report(progress, f"classification: {n} records")
        from tunelab.metrics.classification import score_classification

        corpus["classification"], entries, kept_here = score_classification(
            predictions, gold, labels, label_rule, lambda i: _where(source, line_numbers, i),
            bootstrap if bootstrap and bootstrap > 0 else 0, confidence, seed)
        kept.update(kept_here)
        for i, entry in enumerate(entries):
            per_record[i]["classification"] = entry

    if bootstrap and bootstrap > 0:
        corpus["bootstrap"] = {"n_resamples": bootstrap, "seed": seed, "confidence": confidence,
                               "method": "percentile, records resampled with replacement"}
    if _keep_statistics:
        corpus["_kept"] = kept
        corpus["_references"] = references
        corpus["_gold"] = gold
    return corpus, per_record


def compare_records(records_a, records_b, metrics, *, sources=("A", "B"), line_numbers=(None, None),
                    permutations: int = 10000, **options) -> dict:
    """Score two systems on the same records and test every metric for a difference (a - b).

    Test keys: "<rouge type>.f1", "bleu", "chrf", "exact_match", "token_f1", "accuracy", "macro_f1".
    Each entry's "test" is the one test tunelab reports for that metric (metrics/paired.py: exact
    McNemar for 0/1 scores, else the paired bootstrap, with a CI that agrees with its p and the
    minimum detectable effect); the paired bootstrap, approximate randomisation and McNemar
    results beside it are listed for readers who want them."""
    from tunelab.metrics import paired as P
    from tunelab.metrics import stats as S

    if len(records_a) != len(records_b):
        raise MetricInputError(
            f"{sources[0]} has {len(records_a)} records but {sources[1]} has {len(records_b)}: "
            "a paired comparison needs the same records in the same order"
        )
    bootstrap = options.get("bootstrap", 1000)
    if not bootstrap or bootstrap < 1:
        raise MetricInputError("a paired comparison needs bootstrap >= 1 resamples")
    seed = options.get("seed", 0)
    confidence = options.get("confidence", 0.95)
    corpus_a, _ = score_records(records_a, metrics, source=sources[0], line_numbers=line_numbers[0],
                                _keep_statistics=True, **options)
    corpus_b, _ = score_records(records_b, metrics, source=sources[1], line_numbers=line_numbers[1],
                                _keep_statistics=True, **options)
    refs_a, refs_b = corpus_a.pop("_references"), corpus_b.pop("_references")
    for i, (ra, rb) in enumerate(zip(refs_a, refs_b)):
        if ra != rb:
            where = _where(sources[1], line_numbers[1], i)
            raise MetricInputError(f"{where}: references differ from {_where(sources[0], line_numbers[0], i)}; "
                                   "a paired comparison needs the same records in the same order")
    gold_a, gold_b = corpus_a.pop("_gold"), corpus_b.pop("_gold")
    for i, (ga, gb) in enumerate(zip(gold_a or [], gold_b or [])):
        if ga != gb:  # a paired test of two systems needs the same gold label per record
            where = _where(sources[1], line_numbers[1], i)
            raise MetricInputError(f"{where}: field 'label' is {gb!r}, but {ga!r} at "
                                   f"{_where(sources[0], line_numbers[0], i)}; a paired comparison "
                                   "needs the same records in the same order")
    kept_a, kept_b = corpus_a.pop("_kept"), corpus_b.pop("_kept")
    tests = {}
    for key, value_a in kept_a.items():
        value_b = kept_b[key]
        if value_a[0] == "mean":
            a, b = value_a[1], value_b[1]
            entry = {"a": float(a.mean()), "b": float(b.mean()),
                     "paired_bootstrap": S.paired_bootstrap(a, b, bootstrap, seed, confidence),
                     "approx_randomization": S.approx_randomization(a, b, permutations, seed)}
            if key == "accuracy":
                entry["mcnemar"] = S.mcnemar(a.astype(bool), b.astype(bool))
            entry["test"] = P.paired_test(a, b, bootstrap, seed, confidence)
        else:
            score_fn = value_a[2]
            entry = {"a": float(score_fn(value_a[1].sum(axis=0)[None])[0]),
                     "b": float(score_fn(value_b[1].sum(axis=0)[None])[0]),
                     "paired_bootstrap": S.paired_bootstrap_statistic(value_a[1], value_b[1], score_fn,
                                                                      bootstrap, seed, confidence),
                     "approx_randomization": S.approx_randomization_statistic(value_a[1], value_b[1], score_fn,
                                                                              permutations, seed),
                     "test": P.paired_test_statistic(value_a[1], value_b[1], score_fn, bootstrap, seed, confidence)}
        entry["diff"] = entry["a"] - entry["b"]
        tests[key] = entry
    return {"n": corpus_a["n"], "a": {"source": sources[0], "corpus": corpus_a},
            "b": {"source": sources[1], "corpus": corpus_b}, "tests": tests}
