"""Seeded random corpora for the differential tests of tunelab.metrics against the references.

The texts are built to hit the corner cases that break metric implementations: empty strings,
whitespace- and punctuation-only texts, repeated tokens, digits with separators ("1,000", "3.5",
"2-3"), mixed case, accents, non-Latin scripts (Cyrillic, Greek, CJK, Arabic, Devanagari), emoji,
HTML entities, multi-line texts and several references per record (some missing, some empty).
"""

from __future__ import annotations

import random

import pytest

WORDS = (
    "the a an of to in and cat dog sat on mat The Cat DOG running ran runs quickly "
    "model data train test score value alpha beta gamma x y z it's don't U.S. e.g. "
    "café naïve résumé Ångström façade über straße São Paulo "
    "привет мир данные Москва κόσμος λόγος 東京 中文 数据 日本語 テスト 한국어 مرحبا नमस्ते "
    "😀 🚀 👍🏽 ❤️ ♥ € $5 £10 100% #tag @user C++ 3.5 1,000 2-3 1990s 42 0.001 -7 "
    "&amp; &quot;quoted&quot; &lt;b&gt; <skipped> co-operate well- end. stop, ok; yes: why? wow! "
    '(paren) [bracket] {brace} "quote" \'single\' a/b a\\b ~tilde^ under_score pipe| '
    "... -- — – ‘curly’ “double” « guillemets » ¿qué? ¡sí!"
).split()
PUNCT_ONLY = ["", " ", "   ", "\t", "\n", ".", "...", ",.,", "!?", "- -", "—", "  .  ,  ", "()", "😀", "\n\n"]


def random_text(rng: random.Random, max_len: int = 30) -> str:
    kind = rng.random()
    if kind < 0.06:
        return rng.choice(PUNCT_ONLY)
    n = rng.randint(1, max_len)
    if kind < 0.12:  # repeated tokens
        token = rng.choice(WORDS)
        return " ".join([token] * n)
    tokens = []
    for _ in range(n):
        word = rng.choice(WORDS)
        r = rng.random()
        if r < 0.08:
            word = word.upper()
        elif r < 0.14:
            word = word.capitalize()
        elif r < 0.18:
            word = str(rng.randint(0, 10_000))
        elif r < 0.21:
            word = word + rng.choice(".,!?;:-")
        tokens.append(word)
        if rng.random() < 0.04:
            tokens.append(rng.choice(["\n", "-\n", "  ", "\t", " \n "]))
    sep = "" if rng.random() < 0.03 else " "  # sometimes no spaces at all (CJK-like)
    return sep.join(tokens)


def related_text(rng: random.Random, base: str) -> str:
    """A text sharing many n-grams with `base` (so BLEU/ROUGE are not always ~0)."""
    tokens = base.split(" ")
    out = []
    for token in tokens:
        r = rng.random()
        if r < 0.15:
            continue
        if r < 0.3:
            out.append(rng.choice(WORDS))
        out.append(token)
    if rng.random() < 0.2:
        out.extend(random_text(rng, 5).split(" "))
    return " ".join(out)


def random_records(seed: int, n: int, max_refs: int = 3, allow_missing: bool = True):
    """n (prediction, references) pairs; references may contain None (missing) and "" (empty)."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        base = random_text(rng)
        prediction = related_text(rng, base) if rng.random() < 0.7 else random_text(rng)
        n_refs = rng.randint(1, max_refs)
        refs: list[str | None] = []
        for k in range(n_refs):
            r = rng.random()
            if k > 0 and allow_missing and r < 0.15:
                refs.append(None)
            elif r < 0.22:
                refs.append("")
            else:
                refs.append(related_text(rng, base))
        records.append((prediction, refs))
    return records


@pytest.fixture(scope="session")
def random_corpus():
    """2,500 records, 1-3 references each, with missing (None) and empty ("") references."""
    return random_records(seed=1234, n=2500)


def to_streams(references: list[list[str | None]]) -> list[list[str | None]]:
    """Per-record reference lists -> sacrebleu's reference streams (None-padded)."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


class CorpusTools:
    """The generators above, handed to tests as a fixture (tests/ is not a package)."""

    random_text = staticmethod(random_text)
    related_text = staticmethod(related_text)
    random_records = staticmethod(random_records)
    to_streams = staticmethod(to_streams)


@pytest.fixture(scope="session")
def corpus_tools() -> type[CorpusTools]:
    return CorpusTools
