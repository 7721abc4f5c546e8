"""Scoring units for answers scored by log-likelihood instead of generated text (base.py's protocol).

The model's log-probabilities come from evaluate/; what they mean as metrics lives here, beside
the other units, so every metric's direction, scale and corpus function has one home:
- MultipleChoice: acc, acc_norm, acc_bytes as lm-evaluation-harness defines them (argmax of the
  summed log-likelihood; divided by the choice's length in characters / UTF-8 bytes); means.
- Perplexity: token_nll, perplexity and bits_per_byte, token-weighted over all answer tokens:
  functions of the per-answer statistics [nll, n_tokens, n_bytes] summed over the corpus.
- Preference: reward_accuracy and reward_margin of a preference pair, from the summed log-probs
  of its chosen and its rejected answer given the shared prompt; means over pairs.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics.base import Unit


class MultipleChoice(Unit):
    name = "multiple_choice"

    def per_record(self, record: dict) -> dict:
        """record: {"logprobs": [...], "choices": [...], "answer_index"} -> each key's 0/1 score."""
        lp = np.asarray(record["logprobs"], dtype=float)
        chars = np.asarray([len(c) for c in record["choices"]], dtype=float)
        nbytes = np.asarray([len(c.encode("utf-8")) for c in record["choices"]], dtype=float)
        gold = record["answer_index"]
        return {"acc": float(int(lp.argmax()) == gold),
                "acc_norm": float(int((lp / np.maximum(chars, 1)).argmax()) == gold),
                "acc_bytes": float(int((lp / np.maximum(nbytes, 1)).argmax()) == gold),
                "predicted_index": int(lp.argmax())}

    def statistics(self, records) -> np.ndarray:
        """(n, 3): acc, acc_norm, acc_bytes per record; each key's score is its column's mean."""
        return np.asarray([[r[k] for k in self.keys()] for r in map(self.per_record, records)], dtype=float)


# Corpus statistics from per-answer statistics summed over answers: (rows, 3) -> (rows,).
def _perplexity(s):
    return np.exp(s[..., 0] / s[..., 1])


def _token_nll(s):
    return s[..., 0] / s[..., 1]


def _bits_per_byte(s):
    return s[..., 0] / (math.log(2) * s[..., 2])


class Perplexity(Unit):
    name = "perplexity"
    CORPUS_FNS = {"token_nll": _token_nll, "perplexity": _perplexity, "bits_per_byte": _bits_per_byte}

    def statistics(self, records) -> np.ndarray:
        """records: {"logprob", "n_tokens", "n_bytes"} -> (n, 3) [nll, n_tokens, n_bytes (at least 1)]."""
        return np.asarray([[-r["logprob"], r["n_tokens"], max(r["n_bytes"], 1)] for r in records], dtype=float)

    def corpus_fn(self, key: str):
        return self.CORPUS_FNS[key]


class Preference(Unit):
    name = "preference"

    def per_record(self, record: dict) -> dict:
        """record: {"logp_chosen", "logp_rejected"} -> the pair's margin (nats) and whether it is
        above 0. A tie (margin exactly 0, e.g. identical answers) counts as wrong: the model does
        not prefer the chosen answer."""
        margin = float(record["logp_chosen"]) - float(record["logp_rejected"])
        return {"logp_chosen": float(record["logp_chosen"]), "logp_rejected": float(record["logp_rejected"]),
                "margin": margin, "correct": margin > 0,
                "reward_accuracy": float(margin > 0), "reward_margin": margin}

    def statistics(self, records) -> np.ndarray:
        """(n, 2): reward_accuracy, reward_margin per record; each key's score is its column's mean."""
        return np.asarray([[r[k] for k in self.keys()] for r in map(self.per_record, records)], dtype=float)
