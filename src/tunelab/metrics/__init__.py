"""tunelab.metrics: text and classification metrics, identical to their reference implementations.

Pure Python + numpy; never imports torch or transformers (checked by the tests), so `tunelab score`
starts fast. Scoring is a loop over units, one class per metric with one protocol:

- base            the protocol (per-record statistics, corpus function, signature, direction,
                  scale) and what units share: Records, Bootstrap, Paired, Scored
- units           the text and classification units (Rouge, Bleu, Chrf, ExactMatch, TokenF1,
                  Classification) that `tunelab score` and evaluation run
- loglikelihood   the units of log-likelihood scoring (MultipleChoice, Perplexity)
- vocabulary      the one table of metric names: each reported key, its unit, direction and scale

The arithmetic, one metric per module:

- bleu            corpus/sentence BLEU, identical to sacrebleu 2.x (tokenizers in bleu_tokenizers)
- chrf            chrF / chrF++, identical to sacrebleu's CHRF
- rouge           ROUGE in rouge-score and ROUGE-1.5.5 modes (package tunelab.metrics.rouge)
- classification  accuracy, P/R/F1 (micro/macro/weighted/per class), confusion matrix (= scikit-learn);
                  bootstrap CIs of macro / weighted scores from summed per-record statistics
- labels          map free-form generations to class labels (unmapped -> None, counted)
- exact_match     SQuAD-style normalised exact match
- token_f1        SQuAD-style token F1
- stats           bootstrap CIs, paired bootstrap, approximate randomisation, McNemar
- paired          the one paired test per comparison (exact McNemar with its CI, paired bootstrap,
                  seeds and examples) with its minimum detectable effect
- power           power, minimum detectable effect and the test-set size a change needs
- score           the engine behind `tunelab score` (read_score_file, score_records, compare_records)
- gc_paused       holds off the cyclic GC while results for many records are built

Names below are loaded on first use so that `import tunelab.metrics` stays cheap. exact_match and
token_f1 share their module's name, so import them from their modules:
`from tunelab.metrics.exact_match import exact_match`.
"""

from __future__ import annotations

import importlib

from tunelab.metrics.errors import MetricInputError

_LAZY = {
    "corpus_bleu": "bleu",
    "sentence_bleu": "bleu",
    "BLEUScore": "bleu",
    "corpus_chrf": "chrf",
    "sentence_chrf": "chrf",
    "classification_report": "classification",
    "classification_statistics": "classification",
    "macro_scores_from_statistics": "classification",
    "classification_cis": "classification",
    "rouge_signature": "rouge",
    "extract_label": "labels",
    "bootstrap_ci": "stats",
    "bootstrap_cis": "stats",
    "paired_bootstrap": "stats",
    "approx_randomization": "stats",
    "mcnemar": "stats",
    "paired_test": "paired",
    "seeds_and_examples": "paired",
    "score_records": "score",
}

__all__ = ["MetricInputError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"tunelab.metrics.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'tunelab.metrics' has no attribute {name!r}")
