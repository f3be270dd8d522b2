"""Spanish text normalisation shared by the data checks and the scorers.

One home for "are these two strings the same fact?": accents and case are
folded, punctuation becomes space, and numbers written with digits become
Spanish words (``"15 días"`` and ``"quince días"`` normalise the same way).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from num2words import num2words

# 1.500 and 1.500,50 (Spanish thousands dots, decimal comma), or plain 1500 and 12,5.
_NUMBER = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?(?![\d])|\d+(?:,\d+)?")
_WORD = re.compile(r"\w+", re.UNICODE)
# Word forms num2words does not produce but legal Spanish uses ("veintiún días").
_APOCOPE = {"veintiun": "veintiuno", "un": "uno", "primer": "primero", "tercer": "tercero"}


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch) or ch == "\u0303")


@lru_cache(maxsize=4096)
def _number_words(token: str) -> str:
    if len(token.replace(".", "").replace(",", "")) > 15:
        return token   # beyond num2words' range (model output can hold any digit run): keep the digits
    if "," in token:  # decimal comma: 12,5 -> doce coma cinco
        whole, frac = token.replace(".", "").split(",", 1)
        return f"{num2words(int(whole), lang='es')} coma {num2words(int(frac), lang='es')}"
    return num2words(int(token.replace(".", "")), lang="es")


def normalize(text: str) -> str:
    """Lower-case, accent-free, digits spelled out, one space between words."""
    text = unicodedata.normalize("NFC", text or "").lower()
    text = text.replace("%", " por ciento ")
    text = _NUMBER.sub(lambda m: " " + _number_words(m.group(0)) + " ", text)
    text = _strip_accents(text)
    text = unicodedata.normalize("NFC", text)  # keep ñ composed
    tokens = [_APOCOPE.get(t, t) for t in _WORD.findall(text)]
    return " ".join(tokens)


def words(text: str) -> list[str]:
    """Normalised word tokens (used for n-gram checks)."""
    return normalize(text).split()


def contains(haystack: str, needle: str) -> bool:
    """True when ``needle`` occurs in ``haystack`` on word boundaries, after normalisation."""
    n = normalize(needle)
    if not n:
        return False
    return f" {n} " in f" {normalize(haystack)} "


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
