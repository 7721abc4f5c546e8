"""The text and classification scoring units: one class per metric, one protocol (base.py).

Each unit holds the settings that change its numbers and turns checked records (base.Records)
into per-record statistics, corpus scores with percentile bootstrap CIs, per-record entries and
the keys a paired comparison tests. `tunelab score` (score.py) and evaluation (evaluate/scoring.py)
run the same units, so a number from `eval` equals the one `tunelab score` gives. The arithmetic
lives in the metric modules (bleu.py, chrf.py, rouge/, exact_match.py, token_f1.py,
classification.py); a unit only arranges it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunelab.metrics.base import Bootstrap, Paired, Records, Scored, Unit, mean_entry
from tunelab.metrics.errors import MetricInputError

DEFAULT_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass
class Rouge(Unit):
    """Mean ROUGE precision, recall and F1 per type; the F1s are what reports and tests use."""

    types: tuple[str, ...] = DEFAULT_ROUGE_TYPES
    mode: str = "rouge-score"
    use_stemmer: bool = False
    tokenizer: str = "default"
    options: dict = field(default_factory=dict)  # the rouge155 mode's alpha, multi_ref, remove_stopwords
    name = "rouge"

    def keys(self) -> tuple[str, ...]:
        return tuple(self.types)

    def signature(self, nrefs) -> str:
        from tunelab.metrics.rouge import rouge_signature

        return rouge_signature(nrefs, self.types, mode=self.mode, use_stemmer=self.use_stemmer,
                               tokenizer=self.tokenizer, **self.options)

    def statistics(self, records: Records) -> np.ndarray:
        """(n, types, 3): every record's P, R, F per type, in one matrix."""
        from tunelab.metrics.rouge import rouge_arrays

        arrays = rouge_arrays(records.predictions, records.present, self.types, mode=self.mode,
                              use_stemmer=self.use_stemmer, tokenizer=self.tokenizer, **self.options)
        return np.stack([np.stack(arrays[t], axis=1) for t in self.types], axis=1).reshape(records.n, -1, 3)

    def score(self, records: Records, bootstrap: Bootstrap) -> Scored:
        from tunelab.metrics import stats as S

        n = records.n
        # The resamples for ROUGE's intervals are drawn in the background while ROUGE runs.
        resamples = S.prefetch_resample_counts(n, bootstrap.n_resamples, bootstrap.seed) if bootstrap.on else None
        try:
            signature = self.signature(records.nrefs)  # first: it rejects bad options before any work
            values = self.statistics(records)
        except MetricInputError:
            raise
        except ValueError as exc:  # the rouge package reports bad options as ValueError
            raise MetricInputError(f"rouge: {exc}") from None
        cis = None
        if bootstrap.on:  # one set of resamples serves every CI
            cis = S.bootstrap_cis(values.reshape(n, -1), bootstrap.n_resamples, bootstrap.confidence,
                                  bootstrap.seed, counts=resamples).reshape(len(self.types), 3, 2)
        corpus, per_record, paired = {}, [{} for _ in range(n)], {}
        for k, t in enumerate(self.types):
            p, r, f = values[:, k, 0], values[:, k, 1], values[:, k, 2]
            entry = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean()),
                     "signature": signature}
            if cis is not None:
                entry.update(precision_ci=cis[k, 0].tolist(), recall_ci=cis[k, 1].tolist(), f1_ci=cis[k, 2].tolist())
            corpus[t] = entry
            paired[f"{t}.f1"] = Paired(f)
            for i, (pi, ri, fi) in enumerate(values[:, k].tolist()):
                per_record[i][t] = {"precision": pi, "recall": ri, "f1": fi}
        corpus["rouge_signature"] = signature
        return Scored(corpus, per_record, paired)

    def headline(self, key, scored):
        entry = scored.corpus[key]
        return entry["f1"], entry.get("f1_ci"), {"signature": entry["signature"],
                                                 "note": "mean ROUGE F1 over examples"}

    def example_fields(self, scored, i):
        return {t: scored.per_record[i][t]["f1"] for t in self.types}


class _Sacrebleu(Unit):
    """BLEU and chrF: corpus scores of summed statistics, sentence scores per record (sacrebleu's)."""

    def rows(self, records: Records) -> list[list[int]]:
        """Per-record statistics as Python ints: the corpus number comes from their exact integer
        sums, as in sacrebleu; the float array (statistics) serves resampling only."""
        raise NotImplementedError

    def result(self, summed: list, nrefs) -> dict:
        """The corpus entry of `tunelab score` (score, details, signature) from summed rows."""
        raise NotImplementedError

    def sentence(self, row: list) -> float:
        """One record's sentence score (sacrebleu's sentence_bleu / sentence_chrf) from its row."""
        raise NotImplementedError

    def statistics(self, records: Records) -> np.ndarray:
        return np.array(self.rows(records), dtype=float)

    def score(self, records: Records, bootstrap: Bootstrap) -> Scored:
        rows = self.rows(records)
        entry = self.result([sum(column) for column in zip(*rows)], records.nrefs)
        statistics = np.array(rows, dtype=float)
        ci = bootstrap.statistic_ci(statistics, self.corpus_fn(self.name))
        if ci is not None:
            entry["score_ci"] = ci
        per_record = [{self.name: self.sentence(row)} for row in rows]
        return Scored({self.name: entry}, per_record, {self.name: Paired(statistics, self.corpus_fn(self.name))})

    def headline(self, key, scored):
        entry = scored.corpus[key]
        note = f"corpus {key} on sacrebleu's 0-100 scale; per-example values are sentence {key}"
        return entry["score"], entry.get("score_ci"), {"signature": entry["signature"], "scale": self.scale(key),
                                                       "note": note}

    def example_fields(self, scored, i):
        # the sentence score, and the statistics a paired test of the corpus score resamples
        return {self.name: scored.per_record[i][self.name],
                f"{self.name}_statistics": scored.paired[self.name].values[i].tolist()}


@dataclass
class Bleu(_Sacrebleu):
    """Corpus BLEU as sacrebleu's corpus_bleu; per record, sentence BLEU (effective order)."""

    tokenize: str = "13a"
    smooth_method: str = "exp"
    smooth_value: float | None = None
    lowercase: bool = False
    name = "bleu"

    def signature(self, nrefs) -> str:
        from tunelab.metrics.bleu import bleu_signature

        return bleu_signature(nrefs, tokenize=self.tokenize, lowercase=self.lowercase,
                              smooth_method=self.smooth_method, smooth_value=self.smooth_value)

    def rows(self, records):
        from tunelab.metrics.bleu import segment_statistics

        return segment_statistics(records.predictions, records.references, tokenize=self.tokenize,
                                  lowercase=self.lowercase)[0]

    def _bleu(self, row, effective_order=False):
        from tunelab.metrics.bleu import score_from_statistics

        return score_from_statistics(row, smooth_method=self.smooth_method, smooth_value=self.smooth_value,
                                     effective_order=effective_order)

    def result(self, summed, nrefs):
        result = self._bleu(summed)
        result.signature = self.signature(nrefs)
        return result.to_dict()

    def sentence(self, row):
        return self._bleu(list(row), effective_order=True).score

    def corpus_fn(self, key):
        return lambda summed: np.array([self._bleu(list(row)).score for row in summed])


@dataclass
class Chrf(_Sacrebleu):
    """Corpus chrF (chrF++ with word_order 2) as sacrebleu's CHRF; per record, sentence chrF."""

    word_order: int = 0
    char_order: int = 6
    name = "chrf"

    def signature(self, nrefs) -> str:
        from tunelab.metrics.chrf import chrf_signature

        return chrf_signature(nrefs, word_order=self.word_order)

    def rows(self, records):
        from tunelab.metrics.chrf import segment_statistics

        return segment_statistics(records.predictions, records.references, word_order=self.word_order)[0]

    def result(self, summed, nrefs):
        from tunelab.metrics.chrf import CHRFScore

        return CHRFScore(self.sentence(summed), self.char_order, self.word_order, 2, self.signature(nrefs)).to_dict()

    def sentence(self, row):
        from tunelab.metrics.chrf import f_score

        return f_score(row, self.char_order + self.word_order)

    def corpus_fn(self, key):
        return lambda summed: np.array([self.sentence(list(row)) for row in summed])


class _Answer(Unit):
    """SQuAD-style answer scores: one number per record, the corpus score is their mean."""

    def per_record(self, prediction: str, references: list[str]) -> float:
        raise NotImplementedError

    def statistics(self, records: Records) -> np.ndarray:
        return np.array([self.per_record(p, refs) for p, refs in zip(records.predictions, records.present)])

    def score(self, records: Records, bootstrap: Bootstrap) -> Scored:
        values = self.statistics(records)
        per_record = [{self.name: value} for value in values.tolist()]
        return Scored({self.name: mean_entry(values, bootstrap)}, per_record, {self.name: Paired(values)})

    def headline(self, key, scored):
        return scored.corpus[key]["mean"], scored.corpus[key].get("ci"), {}

    def example_fields(self, scored, i):
        return scored.per_record[i]


class ExactMatch(_Answer):
    name = "exact_match"

    def per_record(self, prediction, references):
        from tunelab.metrics.exact_match import exact_match

        return exact_match(prediction, references)


class TokenF1(_Answer):
    name = "token_f1"

    def per_record(self, prediction, references):
        from tunelab.metrics.token_f1 import token_f1

        return token_f1(prediction, references)


@dataclass
class Classification(Unit):
    """Free-form outputs mapped to labels (labels.py), then accuracy, P/R/F1, unmapped outputs."""

    labels: dict | list | None = None  # the label set with verbalizers; None: the gold labels seen
    label_rule: str = "unique"
    name = "classification"

    def statistics(self, records: Records) -> np.ndarray:
        from tunelab.metrics.classification import classification_statistics
        from tunelab.metrics.labels import Verbalizers, explain_label

        verbalizers = Verbalizers.build(self.labels if self.labels else sorted(set(records.gold)))
        predicted = [explain_label(p, verbalizers, self.label_rule)[0] for p in records.predictions]
        return classification_statistics(records.gold, predicted, list(verbalizers.labels))

    def corpus_fn(self, key):
        from tunelab.metrics.classification import macro_f1_score_fn

        if key != "macro_f1":
            raise ValueError(f"{key} is a mean over records, not a corpus statistic")
        return macro_f1_score_fn(len(self.labels))

    def score(self, records: Records, bootstrap: Bootstrap) -> Scored:
        from tunelab.metrics.classification import score_classification

        report, entries, kept = score_classification(
            records.predictions, records.gold, self.labels, self.label_rule, records.where,
            bootstrap.n_resamples if bootstrap.on else 0, bootstrap.confidence, bootstrap.seed)
        paired = {key: Paired(value[1], value[2] if value[0] == "statistic" else None) for key, value in kept.items()}
        return Scored({self.name: report}, [{self.name: entry} for entry in entries], paired)

    def headline(self, key, scored):
        report = scored.corpus[self.name]
        if key == "accuracy":
            return report["accuracy"], report.get("accuracy_ci"), {}
        if key == "macro_f1":
            return report["macro"]["f1"], report.get("macro_f1_ci"), {
                "note": "macro-averaged F1 over the labels (unmapped answers count wrong)"}
        unmapped = sum(entry[self.name]["predicted"] is None for entry in scored.per_record)
        return unmapped, None, {"higher_is_better": False,
                                "note": "generations that name no label (or several): counted as wrong"}

    def example_fields(self, scored, i):
        entry = scored.per_record[i][self.name]
        return {"accuracy": float(entry["correct"]), "predicted_label": entry["predicted"],
                "label_reason": entry["reason"]}


UNITS = {unit.name: unit for unit in (Rouge, Bleu, Chrf, ExactMatch, TokenF1, Classification)}
