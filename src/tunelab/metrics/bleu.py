"""BLEU (Papineni et al., 2002), identical to sacrebleu 2.x's corpus and sentence BLEU.

Same tokenizers (bleu_tokenizers), smoothing (exp, floor, add-k, none), effective order, clipping
against the per-n-gram maximum over several references, closest reference length (ties -> the
shorter), and the same floating-point operations in the same order, so scores agree exactly.

References are given per record: `references[i]` is the list of references of record i. As in
sacrebleu, a reference that is `None` is *missing* (dropped: it neither counts in nrefs nor in the
closest-length choice), while `""` is an *empty* reference (length 0, no n-grams). A record whose
references are all missing is an error here (sacrebleu crashes on it or uses a length of -1).

Faster than sacrebleu (>= 3x on corpus 13a BLEU, benchmarks/metrics_bench.py) because:
13a tokenisation avoids per-match regex template expansion (see bleu_tokenizers); from
VECTORISE_FROM records on, n-gram matches are counted corpus-wide with numpy (bleu_counts: one
sort per order, bincounts otherwise); below it (sentence BLEU) per-record dicts are counted by
collections' C helper and clipped matches come from C set intersections - when no reference
repeats an n-gram every match clips to 1, so the count is the number of distinct hypothesis
n-grams found in the reference. Both paths give identical integers (tested).

Signature: sacrebleu's format and field order, plus one field `impl:tunelab-<version>` before
`version`, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:tunelab-0.1.0|version:2.6.0`.
`version` is the sacrebleu release whose behaviour this reproduces (differential-tested against
it); `impl` says honestly that tunelab, not sacrebleu, computed the number.
"""

from __future__ import annotations

import math

try:  # the C helper behind Counter.update; a plain dict skips Counter.__init__'s Python overhead
    from collections import _count_elements
except ImportError:  # pragma: no cover - other Python implementations

    def _count_elements(mapping, iterable):
        for element in iterable:
            mapping[element] = mapping.get(element, 0) + 1
from dataclasses import dataclass, field
from functools import lru_cache

from tunelab.metrics.bleu_tokenizers import get_tokenizer
from tunelab.metrics.errors import MetricInputError

MAX_NGRAM_ORDER = 4
SMOOTH_DEFAULTS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
VECTORISE_FROM = 64  # records: from here on count n-grams corpus-wide with numpy (bleu_counts)
SACREBLEU_VERSION = "2.6.0"  # the release tests/metrics/test_bleu.py compares against


@dataclass
class BLEUScore:
    score: float
    precisions: list[float]
    bp: float
    sys_len: int
    ref_len: int
    signature: str = ""
    counts: list[float] = field(default_factory=list)  # matched n-grams per order (after add-k)
    totals: list[float] = field(default_factory=list)  # hypothesis n-grams per order (after add-k)

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        ratio = self.sys_len / self.ref_len if self.ref_len else 0
        return (
            f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} ratio = {ratio:.3f} "
            f"hyp_len = {self.sys_len:d} ref_len = {self.ref_len:d})"
        )

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "precisions": list(self.precisions),
            "bp": self.bp,
            "sys_len": self.sys_len,
            "ref_len": self.ref_len,
            "signature": self.signature,
        }


def _my_log(x: float) -> float:
    # sacrebleu.utils.my_log: log floored at -9999999999 for a zero precision
    return -9999999999 if x == 0.0 else math.log(x)


def compute_bleu(
    correct: list,
    total: list,
    sys_len: int,
    ref_len: int,
    smooth_method: str = "none",
    smooth_value: float | None = None,
    effective_order: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> BLEUScore:
    """BLEU from sufficient statistics; a line-by-line port of sacrebleu's BLEU.compute_bleu."""
    if smooth_method not in SMOOTH_DEFAULTS:
        raise MetricInputError(
            f"unknown BLEU smoothing {smooth_method!r}; choose one of {', '.join(SMOOTH_DEFAULTS)}"
        )
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    correct, total = list(correct), list(total)

    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * max_ngram_order
    if not any(correct):
        return BLEUScore(0.0, precisions, bp, sys_len, ref_len, counts=correct, totals=total)

    smooth_mteval = 1.0
    eff_order = max_ngram_order
    for n in range(1, max_ngram_order + 1):
        if smooth_method == "add-k" and n > 1:
            correct[n - 1] += smooth_value
            total[n - 1] += smooth_value
        if total[n - 1] == 0:
            break
        if effective_order:
            eff_order = n
        if correct[n - 1] == 0:
            if smooth_method == "exp":
                smooth_mteval *= 2
                precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1])
            elif smooth_method == "floor":
                precisions[n - 1] = 100.0 * smooth_value / total[n - 1]
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]

    score = bp * math.exp(sum([_my_log(p) for p in precisions[:eff_order]]) / eff_order)
    return BLEUScore(score, precisions, bp, sys_len, ref_len, counts=correct, totals=total)


def _ngram_counters(tokens: list[str], max_order: int) -> list[dict]:
    """One count dict per order n = 1..max_order (unigrams as str, longer n-grams as tuples)."""
    counters = []
    for n in range(1, max_order + 1):
        counts: dict = {}
        _count_elements(counts, zip(*[tokens[i:] for i in range(n)]) if n > 1 else tokens)
        counters.append(counts)
    return counters


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    closest_diff, closest_len = -1, -1
    for ref_len in ref_lens:
        diff = abs(hyp_len - ref_len)
        if closest_diff == -1 or diff < closest_diff:
            closest_diff, closest_len = diff, ref_len
        elif diff == closest_diff and ref_len < closest_len:
            closest_len = ref_len
    return closest_len


def _preprocess(text: str, tokenizer, lowercase: bool) -> list[str]:
    if lowercase:
        text = text.lower()
    return tokenizer(text.rstrip()).split()


def _check_inputs(hypotheses, references) -> None:
    if isinstance(hypotheses, str) or not isinstance(hypotheses, (list, tuple)):
        raise MetricInputError("hypotheses must be a list of strings")
    if isinstance(references, str) or not isinstance(references, (list, tuple)):
        raise MetricInputError("references must be a list (one list of references per record)")
    if len(hypotheses) != len(references):
        raise MetricInputError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference lists (one per record)"
        )


def present_references(hypotheses, references) -> list[list[str]]:
    """Each record's references without the missing (None) ones, after the checks BLEU and chrF
    share: a string hypothesis, a list of strings or None, at least one reference present."""
    _check_inputs(hypotheses, references)
    out = []
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise MetricInputError(f"record {i}: hypothesis must be a string, got {type(hyp).__name__}")
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)):
            raise MetricInputError(f"record {i}: references must be a list of strings")
        present = [r for r in refs if r is not None]
        if not all(isinstance(r, str) for r in present):
            raise MetricInputError(f"record {i}: every reference must be a string (or None if missing)")
        if not present:
            raise MetricInputError(f"record {i}: no reference (all missing); use \"\" for an empty one")
        out.append(present)
    return out


def segment_statistics(
    hypotheses: list[str],
    references: list[list[str | None]],
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> tuple[list[list[int]], set[int]]:
    """Per-record sufficient statistics [hyp_len, ref_len, correct_1..n, total_1..n] and the set
    of reference counts seen (for the signature's nrefs)."""
    present_refs = present_references(hypotheses, references)
    tokenizer = get_tokenizer(tokenize)
    nrefs_seen = {len(present) for present in present_refs}
    hyp_tokens, ref_tokens = [], []
    for hyp, present in zip(hypotheses, present_refs):
        hyp_tokens.append(_preprocess(hyp, tokenizer, lowercase))
        ref_tokens.append([_preprocess(ref, tokenizer, lowercase) for ref in present])

    if len(hyp_tokens) >= VECTORISE_FROM:
        from tunelab.metrics.bleu_counts import match_statistics

        correct, total = match_statistics(hyp_tokens, ref_tokens, max_ngram_order)
        correct, total = correct.tolist(), total.tolist()
    else:
        correct, total = [], []
        for hyp, refs in zip(hyp_tokens, ref_tokens):
            c, t = _record_matches(hyp, refs, max_ngram_order)
            correct.append(c)
            total.append(t)
    stats = []
    for hyp, refs, c, t in zip(hyp_tokens, ref_tokens, correct, total):
        hyp_len = len(hyp)
        stats.append([hyp_len, _closest_ref_len(hyp_len, [len(r) for r in refs]), *c, *t])
    return stats, nrefs_seen


def _record_matches(hyp_tokens: list[str], refs: list[list[str]], max_ngram_order: int):
    """Clipped matches and totals per order for one record (the dict path)."""
    ref_ngrams: list[dict] | None = None
    ref_unique = [True] * max_ngram_order  # no reference repeats an n-gram of this order
    for tokens in refs:
        counters = _ngram_counters(tokens, max_ngram_order)
        for n, counts in enumerate(counters, start=1):
            if len(counts) != max(len(tokens) - n + 1, 0):
                ref_unique[n - 1] = False
        if ref_ngrams is None:
            ref_ngrams = counters
        else:  # clip against the maximum count over references
            for merged, this in zip(ref_ngrams, counters):
                for ngram, count in this.items():
                    if count > merged.get(ngram, 0):
                        merged[ngram] = count
    hyp_len = len(hyp_tokens)
    correct = []
    total = []
    for n, r in enumerate(ref_ngrams, start=1):
        total.append(hyp_len - n + 1 if hyp_len >= n else 0)
        hyp_iter = zip(*[hyp_tokens[i:] for i in range(n)]) if n > 1 else hyp_tokens
        if ref_unique[n - 1]:
            # every reference count is 1, so each shared n-gram clips to 1: count the distinct
            # hypothesis n-grams found in the reference (a C loop, no hypothesis counts needed)
            correct.append(len(r.keys() & hyp_iter))
        else:  # sum of min(hyp count, ref count) over the shared n-grams, in C
            h: dict = {}
            _count_elements(h, hyp_iter)
            common = h.keys() & r.keys()
            correct.append(sum(map(min, map(h.__getitem__, common), map(r.__getitem__, common))))
    return correct, total


@lru_cache(maxsize=None)
def _tunelab_version() -> str:
    try:
        from importlib.metadata import version

        return version("tunelab")
    except Exception:  # running from a source tree without installed metadata
        return "unknown"


def bleu_signature(
    nrefs: int | str,
    *,
    tokenize: str = "13a",
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    effective_order: bool = False,
) -> str:
    smooth = smooth_method
    default = SMOOTH_DEFAULTS.get(smooth_method)
    if default is not None:
        smooth += f"[{(default if smooth_value is None else smooth_value):.2f}]"
    return (
        f"nrefs:{nrefs}|case:{'lc' if lowercase else 'mixed'}|eff:{'yes' if effective_order else 'no'}"
        f"|tok:{tokenize}|smooth:{smooth}|impl:tunelab-{_tunelab_version()}|version:{SACREBLEU_VERSION}"
    )


def _nrefs_field(nrefs_seen: set[int]) -> int | str:
    return next(iter(nrefs_seen)) if len(nrefs_seen) == 1 else "var"


def score_from_statistics(summed: list, **options) -> BLEUScore:
    """BLEU from summed segment statistics (as returned by segment_statistics). options:
    compute_bleu's smooth_method (here "exp" by default, as corpus_bleu), smooth_value,
    effective_order and max_ngram_order."""
    order = options.get("max_ngram_order", MAX_NGRAM_ORDER)
    return compute_bleu(summed[2 : 2 + order], summed[2 + order :], int(summed[0]), int(summed[1]),
                        **{"smooth_method": "exp", **options})


def corpus_bleu(
    hypotheses: list[str],
    references: list[list[str | None]],
    *,
    tokenize: str = "13a",
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    effective_order: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> BLEUScore:
    """Corpus BLEU = sacrebleu.corpus_bleu(hypotheses, reference streams) with the same options.

    `references[i]` lists record i's references (sacrebleu takes them transposed, as streams)."""
    if smooth_method not in SMOOTH_DEFAULTS:
        raise MetricInputError(
            f"unknown BLEU smoothing {smooth_method!r}; choose one of {', '.join(SMOOTH_DEFAULTS)}"
        )
    stats, nrefs_seen = segment_statistics(
        hypotheses, references, tokenize=tokenize, lowercase=lowercase, max_ngram_order=max_ngram_order
    )
    if not stats:
        raise MetricInputError("corpus BLEU needs at least one record")
    summed = [sum(column) for column in zip(*stats)]
    result = score_from_statistics(
        summed,
        smooth_method=smooth_method,
        smooth_value=smooth_value,
        effective_order=effective_order,
        max_ngram_order=max_ngram_order,
    )
    result.signature = bleu_signature(
        _nrefs_field(nrefs_seen),
        tokenize=tokenize,
        smooth_method=smooth_method,
        smooth_value=smooth_value,
        lowercase=lowercase,
        effective_order=effective_order,
    )
    return result


def sentence_bleu(hypothesis: str, references: list[str | None], **options) -> BLEUScore:
    """Sentence BLEU = sacrebleu.sentence_bleu: corpus_bleu's options, effective_order on by
    default (with exp smoothing, as sacrebleu)."""
    if isinstance(references, str):
        raise MetricInputError("references must be a list of strings, not one string")
    return corpus_bleu([hypothesis], [list(references)], **{"effective_order": True, **options})
