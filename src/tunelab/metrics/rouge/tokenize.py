"""Tokenizers for ROUGE, and the corpus layout the vectorised scorers work on.

`default` is rouge-score 0.1.2's tokenizer: lowercase, every character outside [a-z0-9] is a
separator, tokens longer than 3 characters are Porter-stemmed when stemming is on. Non-ASCII text
therefore vanishes (an all-Cyrillic answer scores 0 against itself).

`unicode` (a departure from both rouge-score and ROUGE-1.5.5): NFC-normalise, lowercase, and keep
runs of letters, digits and combining marks of any script as tokens; Han ideographs and Japanese
kana, written without spaces, are one token per character. Underscores, punctuation, symbols and
emoji separate tokens. ASCII tokens are stemmed exactly as in `default`, so on pure-ASCII text both
tokenizers give the same tokens.

`tokenize_corpus` tokenizes many texts at once into one flat array of integer token ids (equal ids
= equal tokens after stemming) with text and sentence offsets. Sentences are the non-empty token
runs between newlines, which is exactly what rouge-score's rougeLsum sees (it splits on "\\n" and
an empty sentence contributes nothing).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass

import numpy as np

from tunelab.metrics.rouge.stemmer import stem

TOKENIZERS = ("default", "unicode")
# "rouge155" (internal): ROUGE-1.5.5 lowercases ASCII only (perl tr/A-Z/a-z/ on bytes).
_ALL_TOKENIZERS = (*TOKENIZERS, "rouge155")
_ASCII_TOKEN_RE = re.compile(r"[a-z0-9]+")
_NEWLINE, _TEXT_SEP, _STOPWORD = -1, -2, -3

# bytes.translate table for the corpus fast path: [a-z0-9] kept, "\n" -> \x01, "\x00" -> \x02,
# every other byte -> space (non-ASCII characters were already encoded as "?").
_TABLE = bytearray(b" " * 256)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _TABLE[_c] = _c
_TABLE[ord("\n")] = 1
_TABLE[0] = 2
_TABLE = bytes(_TABLE)


def _check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in _ALL_TOKENIZERS:
        raise ValueError(f"unknown ROUGE tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")


_UNICODE_RE = None


def _unicode_re():
    """Letters/digits/marks of any script; Han and kana one character per token. Built once."""
    global _UNICODE_RE
    if _UNICODE_RE is None:
        marks, lo = [], None
        for cp in range(sys.maxunicode + 1):
            is_mark = unicodedata.category(chr(cp)).startswith("M")
            if is_mark and lo is None:
                lo = cp
            elif not is_mark and lo is not None:
                marks.append(f"{re.escape(chr(lo))}-{re.escape(chr(cp - 1))}")
                lo = None
        cjk = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
        _UNICODE_RE = re.compile(rf"[{cjk}]|(?:(?![{cjk}])[^\W_]|[{''.join(marks)}])+")
    return _UNICODE_RE


def tokenize(text: str, use_stemmer: bool = False, tokenizer: str = "default") -> list[str]:
    """Tokens of one text (rouge-score's `tokenize.tokenize` for `default`)."""
    _check_tokenizer(tokenizer)
    if tokenizer in ("default", "rouge155"):
        low = text.lower() if tokenizer == "default" else text.encode("ascii", "replace").lower().decode()
        tokens = _ASCII_TOKEN_RE.findall(low)
        if use_stemmer:
            tokens = [stem(t) if len(t) > 3 else t for t in tokens]
        return [t for t in tokens if t]
    tokens = _unicode_re().findall(unicodedata.normalize("NFC", text).lower())
    if use_stemmer:
        tokens = [
            stem(t) if len(t) > 3 and t.isascii() and _ASCII_TOKEN_RE.fullmatch(t) else t
            for t in tokens
        ]
    return [t for t in tokens if t]


@dataclass
class Corpus:
    """Many tokenized texts in flat arrays.

    ids[text_start[t]:text_start[t+1]] are text t's token ids; sentence s covers
    ids[sent_start[s]:sent_start[s+1]] (the last one ends at len(ids)) and belongs to text
    sent_text[s]; text t's sentences are text_sent_start[t]:text_sent_start[t+1].
    """

    ids: np.ndarray
    text_start: np.ndarray
    sent_start: np.ndarray
    sent_text: np.ndarray
    text_sent_start: np.ndarray
    vocab: dict

    @property
    def text_len(self) -> np.ndarray:
        return np.diff(self.text_start)

    @property
    def sent_len(self) -> np.ndarray:
        return np.diff(np.append(self.sent_start, len(self.ids)))


def _layout(stream: np.ndarray, n_texts: int, vocab: dict) -> Corpus:
    """From an id stream with _NEWLINE/_TEXT_SEP/_STOPWORD markers to a Corpus."""
    stream = stream[stream != _STOPWORD]  # removed words do not end a sentence
    is_tok = stream >= 0
    text_of = np.cumsum(stream == _TEXT_SEP)
    ids = stream[is_tok]
    tix = text_of[is_tok]
    begins = is_tok & ~np.concatenate(([False], is_tok[:-1]))
    sent_start = np.flatnonzero(begins[is_tok])
    sent_text = tix[sent_start]
    every = np.arange(n_texts + 1)
    return Corpus(
        ids=ids.astype(np.int64, copy=False),
        text_start=np.searchsorted(tix, every),
        sent_start=sent_start,
        sent_text=sent_text,
        text_sent_start=np.searchsorted(sent_text, every),
        vocab=vocab,
    )


def tokenize_corpus(
    texts: list[str],
    use_stemmer: bool = False,
    tokenizer: str = "default",
    vocab: dict | None = None,
    stopwords: frozenset | None = None,
) -> Corpus:
    """Tokenize `texts` into a Corpus. Pass the same `vocab` dict to share ids between calls.
    Tokens in `stopwords` (compared before stemming, as ROUGE-1.5.5 -s does) are removed."""
    _check_tokenizer(tokenizer)
    vocab = {} if vocab is None else vocab
    ids_of: dict = vocab.setdefault("_raw", {})  # raw token -> id of its (stemmed) form
    forms: dict = vocab.setdefault("_forms", {})  # stemmed form -> id
    joined = "\x00".join(texts)
    fast = tokenizer in ("default", "rouge155") and joined.count("\x00") == max(len(texts) - 1, 0)
    if fast:
        # One pass over the whole corpus in C: lowercase, non-ASCII -> "?", translate, split.
        if tokenizer == "default":
            data = joined.lower().encode("ascii", "replace").translate(_TABLE)
        else:
            data = joined.encode("ascii", "replace").lower().translate(_TABLE)
        pieces = data.replace(b"\x01", b" \x01 ").replace(b"\x02", b" \x02 ").split()
        ids_of.setdefault(b"\x01", _NEWLINE)
        ids_of.setdefault(b"\x02", _TEXT_SEP)
        for raw in set(pieces).difference(ids_of):
            word = raw.decode()
            if stopwords and word in stopwords:
                ids_of[raw] = _STOPWORD
                continue
            form = stem(word) if use_stemmer and len(word) > 3 else word
            ids_of[raw] = forms.setdefault(form, len(forms))
    else:
        pieces = []
        for i, text in enumerate(texts):
            if i:
                pieces.append(_TEXT_SEP)
            for j, line in enumerate(text.split("\n")):
                if j:
                    pieces.append(_NEWLINE)
                words = tokenize(line, False, tokenizer)
                if stopwords:
                    words = [w for w in words if w not in stopwords]
                if use_stemmer:
                    words = tokenize(" ".join(words), True, tokenizer) if tokenizer != "unicode" else [
                        stem(w) if len(w) > 3 and w.isascii() and _ASCII_TOKEN_RE.fullmatch(w) else w
                        for w in words
                    ]
                pieces.extend(words)
        ids_of.setdefault(_NEWLINE, _NEWLINE)
        ids_of.setdefault(_TEXT_SEP, _TEXT_SEP)
        for form in set(pieces).difference(ids_of):
            ids_of[form] = forms.setdefault(form, len(forms))
    stream = np.fromiter(map(ids_of.__getitem__, pieces), dtype=np.int64, count=len(pieces))
    return _layout(stream, len(texts), vocab)


def id_to_token(corpus: Corpus) -> list:
    """Inverse of the stemmed-form ids (for debugging and tests)."""
    forms = corpus.vocab["_forms"]
    out = [None] * len(forms)
    for form, i in forms.items():
        out[i] = form
    return out
