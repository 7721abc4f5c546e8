r"""BLEU tokenizers, identical in output to sacrebleu 2.x's `13a`, `intl`, `char` and `none`.

Each is a function `str -> str` (tokens joined by single spaces), memoised like sacrebleu's.
13a is sacrebleu's Tokenizer13a + TokenizerRegexp with one change for speed: the first regex
(pad every ASCII symbol in `{|}~[\]^_\` !"#$%&()*+:;<=>?@/` with spaces) matches one character
at a time, so it is done with `str.replace` for the symbols present. On CPython 3.11 each regex match with a
`\1` template costs a call into Python's re._parser.expand_template, and that pattern matches
every space, so this is where sacrebleu spends most of its tokenisation time. The other three
rules (period/comma next to a non-digit, dash after a digit) keep sacrebleu's regexes verbatim
because their non-overlapping left-to-right semantics matter, and run only when the line
contains the character they act on.
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex  # the `regex` package (sacrebleu's dependency too): \p{P}, \p{S}, \p{N} classes

_CACHE_SIZE = 2**16

# 13a rule 1: the character class of sacrebleu's r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' (the space in
# it is left out: padding a space with spaces changes nothing after the final split)
_13A_SYMBOLS = frozenset(
    [chr(c) for c in range(ord("{"), ord("~") + 1)]
    + [chr(c) for c in range(ord("["), ord("`") + 1)]
    + [chr(c) for c in range(ord("!"), ord("&") + 1)]
    + [chr(c) for c in range(ord("("), ord("+") + 1)]
    + [chr(c) for c in range(ord(":"), ord("@") + 1)]
    + ["/"]
)
# 13a rules 2-4, verbatim from sacrebleu's TokenizerRegexp
_13A_PERIOD_COMMA_AFTER_NONDIGIT = re.compile(r"([^0-9])([\.,])")
_13A_PERIOD_COMMA_BEFORE_NONDIGIT = re.compile(r"([\.,])([^0-9])")
_13A_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
# A period or comma touching a digit or another period/comma: only then do rules 2-3 need the
# regexes. Otherwise every period/comma has non-digit, non-[.,] neighbours, so rule 2 pads each
# one with spaces and rule 3 then adds nothing: two str.replace calls give the same tokens.
_13A_PERIOD_COMMA_CONTEXT = re.compile(r"[0-9.,][.,]|[.,][0-9.,]")


@lru_cache(maxsize=_CACHE_SIZE)
def tokenize_13a(line: str) -> str:
    """mteval-v13a tokenisation as sacrebleu's `13a` (the WMT standard)."""
    line = line.replace("<skipped>", "")
    line = line.replace("-\n", "")
    line = line.replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"')
        line = line.replace("&amp;", "&")
        line = line.replace("&lt;", "<")
        line = line.replace("&gt;", ">")
    line = f" {line} "
    # Rules 2-4 (period, comma, dash) only ever look at whether a neighbour is a digit or one of
    # ".,-", and rule 1 only puts spaces (non-digits) next to symbols (non-digits, not ".,-"), so
    # rule 1 commutes with them and can run last, as plain replaces of the symbols present.
    if "." in line or "," in line:
        if _13A_PERIOD_COMMA_CONTEXT.search(line):
            line = _13A_PERIOD_COMMA_AFTER_NONDIGIT.sub(r"\1 \2 ", line)
            line = _13A_PERIOD_COMMA_BEFORE_NONDIGIT.sub(r" \1 \2", line)
        else:
            line = line.replace(".", " . ").replace(",", " , ")
    if "-" in line:
        line = _13A_DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    for symbol in _13A_SYMBOLS.intersection(line):
        line = line.replace(symbol, f" {symbol} ")
    return " ".join(line.split())


_INTL_RULES = (
    # punctuation preceded by a non-digit
    (regex.compile(r"(\P{N})(\p{P})"), r"\1 \2 "),
    # punctuation followed by a non-digit
    (regex.compile(r"(\p{P})(\P{N})"), r" \1 \2"),
    # symbols
    (regex.compile(r"(\p{S})"), r" \1 "),
)


@lru_cache(maxsize=_CACHE_SIZE)
def tokenize_intl(line: str) -> str:
    """mteval-v14 international tokenisation as sacrebleu's `intl` (Unicode punctuation/symbols)."""
    for pattern, replacement in _INTL_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


@lru_cache(maxsize=_CACHE_SIZE)
def tokenize_char(line: str) -> str:
    """Every character is a token, as sacrebleu's `char` (spaces become empty tokens, then vanish)."""
    return " ".join(line)


def tokenize_none(line: str) -> str:
    """No tokenisation: split on whitespace only, as sacrebleu's `none`."""
    return line


TOKENIZERS = {
    "13a": tokenize_13a,
    "intl": tokenize_intl,
    "char": tokenize_char,
    "none": tokenize_none,
}


def get_tokenizer(name: str):
    from tunelab.metrics.errors import MetricInputError

    try:
        return TOKENIZERS[name]
    except KeyError:
        raise MetricInputError(
            f"unknown BLEU tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}"
        ) from None
