"""chrF (Popović 2015) and chrF++ (word_order=2, Popović 2017), identical to sacrebleu 2.x's CHRF.

Character n-grams 1..char_order (whitespace removed unless `whitespace=True`), plus word n-grams
1..word_order on sacrebleu's punctuation-split words; per-order [hyp, ref, match] counts; with
several references the statistics of the reference with the best sentence-level F are kept; the
corpus score is computed from the summed statistics. Default smoothing is sacrebleu's effective
order (average P and R over orders with both counts > 0); `eps_smoothing=True` is the chrF++.py /
Moses / NLTK variant. References per record as in tunelab.metrics.bleu (None = missing).
Signature: sacrebleu's, plus `impl:tunelab-<version>` before `version` (see bleu.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from tunelab.metrics.bleu import SACREBLEU_VERSION, _count_elements, _tunelab_version, present_references
from tunelab.metrics.errors import MetricInputError

_PUNCTS = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass
class CHRFScore:
    score: float
    char_order: int
    word_order: int
    beta: int
    signature: str = ""

    @property
    def name(self) -> str:
        return f"chrF{self.beta}" + "+" * self.word_order

    def to_dict(self) -> dict:
        return {"score": self.score, "name": self.name, "signature": self.signature}


def _count(iterable) -> dict:
    counts: dict = {}
    _count_elements(counts, iterable)
    return counts


def _char_ngrams(line: str, max_order: int, whitespace: bool) -> list[dict]:
    if not whitespace:
        line = "".join(line.split())
    counters = [_count(line)]
    for n in range(2, max_order + 1):
        # the slices line[i:i+n], made in C
        counters.append(_count(map(line.__getitem__, map(slice, range(len(line) - n + 1), range(n, len(line) + 1)))))
    return counters


def _words(sent: str) -> list[str]:
    # sacrebleu's _remove_punctuation: split one punctuation mark off the end, else the start
    tokens = []
    for w in sent.split():
        if len(w) == 1:
            tokens.append(w)
        elif w[-1] in _PUNCTS:
            tokens += [w[:-1], w[-1]]
        elif w[0] in _PUNCTS:
            tokens += [w[0], w[1:]]
        else:
            tokens.append(w)
    return tokens


def _word_ngrams(words: list[str], n: int) -> dict:
    return _count([" ".join(words[i : i + n]) for i in range(len(words) - n + 1)])


def _all_ngrams(text: str, char_order: int, word_order: int, whitespace: bool) -> list[dict]:
    ngrams = _char_ngrams(text, char_order, whitespace)
    if word_order > 0:
        words = _words(text)
        ngrams.extend(_word_ngrams(words, n) for n in range(1, word_order + 1))
    return ngrams


def _match_statistics(hyp: dict, ref: dict) -> list[int]:
    # sacrebleu's CHRF._get_match_statistics; the clipped matches summed over shared keys, in C
    common = hyp.keys() & ref.keys()
    match_count = sum(map(min, map(hyp.__getitem__, common), map(ref.__getitem__, common)))
    return [sum(hyp.values()) if ref else 0, sum(ref.values()), match_count]


def f_score(stats: list, order: int, beta: int = 2, eps_smoothing: bool = False) -> float:
    """chrF in [0, 100] from 3*order statistics; a port of sacrebleu's CHRF._compute_f_score."""
    eps = 1e-16
    score = 0.0
    effective_order = 0
    factor = beta**2
    avg_prec, avg_rec = 0.0, 0.0
    for i in range(order):
        n_hyp, n_ref, n_match = stats[3 * i : 3 * i + 3]
        prec = n_match / n_hyp if n_hyp > 0 else eps
        rec = n_match / n_ref if n_ref > 0 else eps
        denom = factor * prec + rec
        score += ((1 + factor) * prec * rec / denom) if denom > 0 else eps
        if n_hyp > 0 and n_ref > 0:
            avg_prec += prec
            avg_rec += rec
            effective_order += 1
    if eps_smoothing:
        return 100 * score / order
    if effective_order == 0:
        avg_prec = avg_rec = 0.0
    else:
        avg_prec /= effective_order
        avg_rec /= effective_order
    if avg_prec + avg_rec:
        score = (1 + factor) * avg_prec * avg_rec
        score /= (factor * avg_prec) + avg_rec
        return 100 * score
    return 0.0


def segment_statistics(
    hypotheses: list[str],
    references: list[list[str | None]],
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: int = 2,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
) -> tuple[list[list[int]], set[int]]:
    """Per-record statistics (best reference by sentence F) and the reference counts seen."""
    present_refs = present_references(hypotheses, references)
    order = char_order + word_order
    stats = []
    nrefs_seen = {len(present) for present in present_refs}
    for hyp, present in zip(hypotheses, present_refs):
        if lowercase:
            hyp, present = hyp.lower(), [r.lower() for r in present]
        hyp_ngrams = _all_ngrams(hyp, char_order, word_order, whitespace)
        best_stats: list[int] = []
        best_f = -1.0
        for ref in present:
            ref_ngrams = _all_ngrams(ref, char_order, word_order, whitespace)
            row: list[int] = []
            for h, r in zip(hyp_ngrams, ref_ngrams):
                row.extend(_match_statistics(h, r))
            f = f_score(row, order, beta, eps_smoothing)
            if f > best_f:
                best_f, best_stats = f, row
        stats.append(best_stats)
    return stats, nrefs_seen


def chrf_signature(nrefs, *, char_order=6, word_order=0, lowercase=False, whitespace=False, eps_smoothing=False) -> str:
    return (
        f"nrefs:{nrefs}|case:{'lc' if lowercase else 'mixed'}|eff:{'no' if eps_smoothing else 'yes'}"
        f"|nc:{char_order}|nw:{word_order}|space:{'yes' if whitespace else 'no'}"
        f"|impl:tunelab-{_tunelab_version()}|version:{SACREBLEU_VERSION}"
    )


def corpus_chrf(hypotheses: list[str], references: list[list[str | None]], **options) -> CHRFScore:
    """Corpus chrF = sacrebleu's CHRF(...).corpus_score with references given per record.

    options: segment_statistics' keywords (char_order, word_order, beta, lowercase, whitespace,
    eps_smoothing), with its defaults (sacrebleu's)."""
    stats, nrefs_seen = segment_statistics(hypotheses, references, **options)
    if not stats:
        raise MetricInputError("corpus chrF needs at least one record")
    # the defaults are read from the function that applies them, so the two cannot drift
    settings = {name: param.default for name, param in inspect.signature(segment_statistics).parameters.items()
                if param.kind is inspect.Parameter.KEYWORD_ONLY}
    settings.update(options)
    beta = settings.pop("beta")
    summed = [sum(column) for column in zip(*stats)]
    score = f_score(summed, settings["char_order"] + settings["word_order"], beta, settings["eps_smoothing"])
    nrefs = next(iter(nrefs_seen)) if len(nrefs_seen) == 1 else "var"
    return CHRFScore(score, settings["char_order"], settings["word_order"], beta, chrf_signature(nrefs, **settings))


def sentence_chrf(hypothesis: str, references: list[str | None], **options) -> CHRFScore:
    """Sentence chrF = sacrebleu.sentence_chrf (same options as corpus_chrf)."""
    if isinstance(references, str):
        raise MetricInputError("references must be a list of strings, not one string")
    return corpus_chrf([hypothesis], [list(references)], **options)
