"""Porter stemmer, a port of NLTK's `PorterStemmer` in its default NLTK_EXTENSIONS mode.

rouge-score 0.1.2 stems with `nltk.stem.porter.PorterStemmer()`; to be identical to it without
depending on nltk at run time, this module reproduces that algorithm rule for rule (NLTK 3.x,
Apache-2.0). Only the NLTK_EXTENSIONS branches are kept. `stem()` is memoised: evaluation
vocabularies are small, and the cache turns stemming into one dict lookup per token.
"""

from __future__ import annotations

_VOWELS = frozenset("aeiou")

# NLTK_EXTENSIONS irregular forms: word -> stem.
_POOL = {
    "sky": "sky", "skies": "sky", "dying": "die", "lying": "lie", "tying": "tie", "news": "news",
    "innings": "inning", "inning": "inning", "outings": "outing", "outing": "outing",
    "cannings": "canning", "canning": "canning", "howe": "howe", "proceed": "proceed",
    "exceed": "exceed", "succeed": "succeed",
}


def _consonant_flags(word: str) -> list[bool]:
    flags: list[bool] = []
    for i, ch in enumerate(word):
        if ch in _VOWELS:
            flags.append(False)
        elif ch == "y":
            flags.append(True if i == 0 else not flags[i - 1])
        else:
            flags.append(True)
    return flags


def _is_consonant(word: str, i: int) -> bool:
    if word[i] in _VOWELS:
        return False
    if word[i] == "y":
        negate = False
        while i > 0 and word[i] == "y":
            negate = not negate
            i -= 1
        return (word[i] not in _VOWELS) != negate
    return True


def _measure(stem: str) -> int:
    return "".join("c" if c else "v" for c in _consonant_flags(stem)).count("vc")


def _positive(stem: str) -> bool:
    return _measure(stem) > 0


def _gt1(stem: str) -> bool:
    return _measure(stem) > 1


def _contains_vowel(stem: str) -> bool:
    return not all(_consonant_flags(stem))


def _ends_double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    return (
        len(word) >= 3
        and _is_consonant(word, len(word) - 3)
        and not _is_consonant(word, len(word) - 2)
        and _is_consonant(word, len(word) - 1)
        and word[-1] not in ("w", "x", "y")
    ) or (len(word) == 2 and not _is_consonant(word, 0) and _is_consonant(word, 1))


def _apply_rule_list(word: str, rules) -> str:
    """The first rule whose suffix matches decides: applied if its condition holds, else no-op."""
    for suffix, replacement, condition in rules:
        if suffix == "*d" and _ends_double_consonant(word):
            stem = word[:-2]
            return stem + replacement if condition is None or condition(stem) else word
        if word.endswith(suffix):
            stem = word[: -len(suffix)] if suffix else word
            return stem + replacement if condition is None or condition(stem) else word
    return word


def _step1a(word: str) -> str:
    if word.endswith("ies") and len(word) == 4:
        return word[:-3] + "ie"
    return _apply_rule_list(
        word, [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]
    )


def _step1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        stem = word[:-3]
        return stem + "ee" if _measure(stem) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            if _contains_vowel(stem):
                break
    else:
        return word
    last = stem[-1]
    return _apply_rule_list(
        stem,
        [
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", last, lambda s: last not in ("l", "s", "z")),
            ("", "e", lambda s: _measure(s) == 1 and _ends_cvc(s)),
        ],
    )


def _step1c(word: str) -> str:
    return _apply_rule_list(
        word, [("y", "i", lambda s: len(s) > 1 and _is_consonant(s, len(s) - 1))]
    )


def _step2(word: str) -> str:
    if word.endswith("alli") and _positive(word[:-4]):
        return _step2(word[:-4] + "al")
    rules = [
        ("ational", "ate", _positive),
        ("tional", "tion", _positive),
        ("enci", "ence", _positive),
        ("anci", "ance", _positive),
        ("izer", "ize", _positive),
        ("bli", "ble", _positive),
        ("alli", "al", _positive),
        ("entli", "ent", _positive),
        ("eli", "e", _positive),
        ("ousli", "ous", _positive),
        ("ization", "ize", _positive),
        ("ation", "ate", _positive),
        ("ator", "ate", _positive),
        ("alism", "al", _positive),
        ("iveness", "ive", _positive),
        ("fulness", "ful", _positive),
        ("ousness", "ous", _positive),
        ("aliti", "al", _positive),
        ("iviti", "ive", _positive),
        ("biliti", "ble", _positive),
        ("fulli", "ful", _positive),
        ("logi", "log", lambda s: _positive(word[:-3])),
    ]
    return _apply_rule_list(word, rules)


_STEP3 = [
    ("icate", "ic", _positive),
    ("ative", "", _positive),
    ("alize", "al", _positive),
    ("iciti", "ic", _positive),
    ("ical", "ic", _positive),
    ("ful", "", _positive),
    ("ness", "", _positive),
]

_STEP4 = [
    ("al", "", _gt1), ("ance", "", _gt1), ("ence", "", _gt1), ("er", "", _gt1), ("ic", "", _gt1),
    ("able", "", _gt1), ("ible", "", _gt1), ("ant", "", _gt1), ("ement", "", _gt1),
    ("ment", "", _gt1), ("ent", "", _gt1),
    ("ion", "", lambda s: _measure(s) > 1 and s[-1] in ("s", "t")),
    ("ou", "", _gt1), ("ism", "", _gt1), ("ate", "", _gt1), ("iti", "", _gt1), ("ous", "", _gt1),
    ("ive", "", _gt1), ("ize", "", _gt1),
]


def _step5a(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        if _measure(stem) > 1:
            return stem
        if _measure(stem) == 1 and not _ends_cvc(stem):
            return stem
    return word


def _step5b(word: str) -> str:
    return _apply_rule_list(word, [("ll", "l", lambda s: _measure(word[:-1]) > 1)])


def _stem_uncached(word: str) -> str:
    stem = word.lower()
    if stem in _POOL:
        return _POOL[stem]
    if len(word) <= 2:
        return stem
    stem = _step1a(stem)
    stem = _step1b(stem)
    stem = _step1c(stem)
    stem = _step2(stem)
    stem = _apply_rule_list(stem, _STEP3)
    stem = _apply_rule_list(stem, _STEP4)
    stem = _step5a(stem)
    return _step5b(stem)


_CACHE: dict[str, str] = {}


def stem(word: str) -> str:
    """Porter stem of `word` exactly as `nltk.stem.porter.PorterStemmer().stem(word)`."""
    out = _CACHE.get(word)
    if out is None:
        out = _stem_uncached(word)
        if len(_CACHE) < 1_000_000:  # bound memory on adversarial input
            _CACHE[word] = out
    return out
