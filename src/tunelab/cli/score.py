"""`tunelab score FILE.jsonl`: score predictions; `tunelab score --compare A.jsonl B.jsonl`: test
whether system A differs from system B on the same records: each metric's "test" is the one
tunelab reports (exact McNemar for 0/1 scores, else the paired bootstrap), with the paired
bootstrap, approximate randomisation and McNemar listed beside it. Corpus results go to stdout (and --output) as one JSON
object; --per-record writes one JSON line per input record, in input order."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="JSONL: {prediction, references|reference} or {prediction, label}")
    parser.add_argument("--compare", nargs=2, metavar=("A.jsonl", "B.jsonl"),
                        help="paired significance tests between two systems' records (same order)")
    parser.add_argument("--metrics", default=None,
                        help="comma list of rouge,bleu,chrf,exact_match,token_f1,classification "
                             "(default: classification if records have 'label', else rouge,bleu,chrf,exact_match,token_f1)")
    g = parser.add_argument_group("ROUGE")
    g.add_argument("--rouge-mode", default="rouge-score", choices=["rouge-score", "rouge155"])
    g.add_argument("--rouge-types", default="rouge1,rouge2,rougeL,rougeLsum",
                   help="comma list: rouge1..rouge9, rougeL, rougeLsum, rougeW-1.2, rougeS4, rougeS*, rougeSU4, rougeSU*")
    g.add_argument("--stemmer", action="store_true", help="Porter stemmer (rouge-score's use_stemmer)")
    g.add_argument("--rouge-tokenizer", default="default", choices=["default", "unicode"],
                   help="unicode scores accented and non-Latin text (a departure from both references)")
    g.add_argument("--rouge-alpha", type=float, default=None, help="rouge155: F weight alpha (-p), default 0.5")
    g.add_argument("--rouge-multi-ref", choices=["A", "B"], default=None,
                   help="rouge155: several references pooled (A, default) or best (B)")
    g.add_argument("--rouge-remove-stopwords", action="store_true", help="rouge155: remove stopwords (-s)")
    g = parser.add_argument_group("BLEU / chrF")
    g.add_argument("--bleu-tokenize", default="13a", choices=["13a", "intl", "char", "none"])
    g.add_argument("--bleu-smooth", default="exp", choices=["exp", "floor", "add-k", "none"])
    g.add_argument("--bleu-smooth-value", type=float, default=None, help="for floor (default 0.1) and add-k (1)")
    g.add_argument("--bleu-lowercase", action="store_true")
    g.add_argument("--chrf-word-order", type=int, default=0, help="2 = chrF++")
    g = parser.add_argument_group("classification")
    g.add_argument("--labels", default=None,
                   help="label set with optional verbalizers: 'positive:good:great,negative:bad' "
                        "(default: the gold labels seen)")
    g.add_argument("--label-rule", default="unique", choices=["unique", "first"],
                   help="several labels mentioned: unmapped (unique) or the first one (first)")
    g = parser.add_argument_group("statistics and output")
    g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs (0: no CIs)")
    g.add_argument("--permutations", type=int, default=10000, help="approximate randomisation trials (--compare)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--confidence", type=float, default=0.95)
    g.add_argument("--per-record", metavar="OUT.jsonl", help="write one JSON line per record")
    g.add_argument("--output", metavar="OUT.json", help="also write the corpus JSON here")


def parse_labels(text: str | None):
    """'pos:good:great,neg:bad' -> {"pos": ["good", "great"], "neg": ["bad"]}."""
    from tunelab.cli.errors import UserError

    if text is None:
        return None
    labels: dict[str, list[str]] = {}
    for item in text.split(","):
        parts = [p.strip() for p in item.split(":")]
        if not parts[0]:
            raise UserError(f"--labels: empty label in {text!r}")
        if parts[0] in labels:
            raise UserError(f"--labels: label {parts[0]!r} given twice")
        labels[parts[0]] = [p for p in parts[1:] if p]
    return labels


def _default_metrics(records) -> str:
    if all("label" in r for r in records if isinstance(r, dict)):
        return "classification"
    return "rouge,bleu,chrf,exact_match,token_f1"


def _options(args) -> dict:
    rouge_options = {}
    if args.rouge_mode == "rouge155":
        if args.rouge_alpha is not None:
            rouge_options["alpha"] = args.rouge_alpha
        if args.rouge_multi_ref is not None:
            rouge_options["multi_ref"] = args.rouge_multi_ref
        if args.rouge_remove_stopwords:
            rouge_options["remove_stopwords"] = True
    elif args.rouge_alpha is not None or args.rouge_multi_ref or args.rouge_remove_stopwords:
        from tunelab.cli.errors import UserError

        raise UserError("--rouge-alpha, --rouge-multi-ref and --rouge-remove-stopwords need --rouge-mode rouge155")
    return dict(
        rouge_mode=args.rouge_mode, rouge_types=args.rouge_types, use_stemmer=args.stemmer,
        rouge_tokenizer=args.rouge_tokenizer, rouge_options=rouge_options,
        bleu_tokenize=args.bleu_tokenize, bleu_smooth=args.bleu_smooth, bleu_smooth_value=args.bleu_smooth_value,
        bleu_lowercase=args.bleu_lowercase, chrf_word_order=args.chrf_word_order,
        labels=parse_labels(args.labels), label_rule=args.label_rule,
        bootstrap=args.bootstrap, seed=args.seed, confidence=args.confidence,
    )


def _write_atomic(path: str, text: str) -> None:
    # write beside the target, then rename: an interrupt never leaves a half-written file
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def run(args) -> int:
    from tunelab.cli.errors import UserError
    from tunelab.metrics.score import compare_records, read_score_file, score_records

    if bool(args.file) == bool(args.compare):
        raise UserError("give either FILE.jsonl or --compare A.jsonl B.jsonl")
    if args.bootstrap < 0 or args.permutations < 1:
        raise UserError("--bootstrap must be >= 0 and --permutations >= 1")
    options = _options(args)
    start = time.perf_counter()

    def progress(message: str) -> None:  # stage lines on stderr; stdout stays pure JSON
        print(f"tunelab score: {message} ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)

    options["progress"] = progress
    if args.compare:
        if args.per_record:
            raise UserError("--per-record applies to a single FILE, not --compare")
        (records_a, lines_a), (records_b, lines_b) = (read_score_file(p) for p in args.compare)
        metrics = args.metrics or _default_metrics(records_a)
        result = compare_records(records_a, records_b, metrics, sources=tuple(args.compare),
                                 line_numbers=(lines_a, lines_b), permutations=args.permutations, **options)
        n = result["n"]
    else:
        records, lines = read_score_file(args.file)
        metrics = args.metrics or _default_metrics(records)
        result, per_record = score_records(records, metrics, source=args.file, line_numbers=lines, **options)
        n = result["n"]
        if args.per_record:
            _write_atomic(args.per_record, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in per_record))
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.output:
        _write_atomic(args.output, text + "\n")
    try:
        print(text)
    except BrokenPipeError:  # `tunelab score f.jsonl | head`: the reader left, nothing is lost
        sys.stderr.close()
        return 0
    print(f"tunelab score: {n} records, metrics {metrics}, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
