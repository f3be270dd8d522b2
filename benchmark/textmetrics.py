"""Text-overlap and language metrics shared by the generation tasks.

Everything here runs offline: sacrebleu and rouge_score are plain libraries and
py3langid ships its model inside the wheel.  The helpers are deliberately small
so that lm-eval task folders (``tasks/*/``) can wire them as ``process_results``
values and aggregation functions.

Conventions
-----------
* chrF++ and BLEU are *corpus* metrics (0-100), computed once over all
  (reference, prediction) pairs, like lm-eval's own ``bleu``/``chrf++``
  aggregations.  Aggregation helpers take lm-eval's item layout: a list of
  ``(reference, prediction)`` tuples.
* ROUGE-L is the per-item F-measure (0-1), averaged over items.
* Metrics that only apply to some items (exact match, language of very short
  answers) return ``None`` for the others and are averaged with
  :func:`mean_defined`, which skips ``None``.

Why not ``evaluate.load("rouge")``?  evaluate 0.4.x does not ship metric
scripts in its wheel; ``load("rouge")`` fetches ``evaluate-metric/rouge`` from
the Hugging Face Hub and, with no network and no cache, raises
``FileNotFoundError`` (``HF_EVALUATE_OFFLINE=1`` does not change that: it only
stops the download attempt).  That Hub script is a thin wrapper over
``rouge_score.rouge_scorer.RougeScorer``, so we call rouge_score directly.  We
also pass our own tokenizer: rouge_score's default tokenizer keeps only
``[a-z0-9]`` and would cut "canción" into "canci" + "n".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from benchmark.textnorm import normalize, words

# --------------------------------------------------------------------------- chrF++ / BLEU

_CHRFPP = CHRF(word_order=2)  # chrF++: character 6-grams + word 1-2-grams, beta=2
_BLEU = BLEU()  # sacrebleu defaults: 13a tokenizer, 4-grams, no lowercasing


def _clean(text: str | None) -> str:
    return (text or "").strip()


def chrfpp(prediction: str, reference: str) -> float:
    """Sentence-level chrF++ (0-100) of one prediction against one reference."""
    return _CHRFPP.sentence_score(_clean(prediction), [_clean(reference)]).score


def corpus_chrfpp(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF++ (0-100): n-gram statistics are summed over all items first."""
    _check_pairs(predictions, references)
    return _CHRFPP.corpus_score([_clean(p) for p in predictions], [[_clean(r) for r in references]]).score


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level BLEU (0-100, sacrebleu defaults)."""
    _check_pairs(predictions, references)
    return _BLEU.corpus_score([_clean(p) for p in predictions], [[_clean(r) for r in references]]).score


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no items to score")


def _unzip(items: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    refs, preds = [], []
    for ref, pred in items:
        refs.append(ref)
        preds.append(pred)
    return preds, refs


def chrfpp_aggregate(items: Iterable[tuple[str, str]]) -> float:
    """lm-eval aggregation: corpus chrF++ over ``(reference, prediction)`` items."""
    return corpus_chrfpp(*_unzip(items))


def bleu_aggregate(items: Iterable[tuple[str, str]]) -> float:
    """lm-eval aggregation: corpus BLEU over ``(reference, prediction)`` items."""
    return corpus_bleu(*_unzip(items))


# --------------------------------------------------------------------------- ROUGE-L


class SpanishTokenizer:
    """rouge_score tokenizer: Unicode words, lower-cased, accents folded, digits spelled out.

    Uses :func:`benchmark.textnorm.words`, so "42" and "cuarenta y dos" are the
    same tokens and "canción" stays one token.
    """

    def tokenize(self, text: str) -> list[str]:
        return words(text)


@lru_cache(maxsize=1)
def _rouge_l_scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=SpanishTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (0-1) of one prediction against one reference."""
    # rouge_score's signature is score(target, prediction)
    return _rouge_l_scorer().score(_clean(reference), _clean(prediction))["rougeL"].fmeasure


# --------------------------------------------------------------------------- language id

# Languages a model prompted in Spanish plausibly answers in: Spanish, its Romance
# neighbours (the usual confusions), English (the usual fallback), Kichwa/Quechua,
# and the large languages multilingual models drift into.  Restricting the
# classifier keeps it from labelling short Spanish text as an unrelated language
# ("Hola" -> Serbian) while a drift into any of these is still caught.
LANGUAGES: tuple[str, ...] = (
    "es", "pt", "en", "it", "fr", "ca", "gl", "de", "nl", "qu", "zh", "ja", "ko", "ru", "ar",
)
MIN_CONFIDENCE = 0.5  # normalised probability below which the answer is "und"
MIN_LETTERS = 8  # fewer letters than this ("42", "Quito.") cannot be identified reliably


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(LANGUAGES))
    return ident


def detect_language(text: str) -> tuple[str, float]:
    """``(language, probability)`` among :data:`LANGUAGES`; ``("und", p)`` when unsure.

    Deterministic.  Text with fewer than :data:`MIN_LETTERS` letters, or whose
    best language has probability below :data:`MIN_CONFIDENCE`, is ``"und"``.
    """
    text = unicodedata.normalize("NFC", _clean(text))
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return "und", 0.0
    lang, prob = _identifier().classify(text)
    if prob < MIN_CONFIDENCE:
        return "und", prob
    return lang, prob


def spanish_score(text: str) -> float | None:
    """1.0 if the answer is Spanish, 0.0 if it is another language or empty, None if undecidable."""
    if not _clean(text):
        return 0.0
    lang, _ = detect_language(text)
    if lang == "und":
        return None
    return 1.0 if lang == "es" else 0.0


FOREIGN_MIN_WORDS = 5       # shorter answers ("Treinta días (art. 116)") are never rejected
FOREIGN_MAX_SPANISH = 0.05  # rejected only when the classifier gives Spanish less than this probability


def foreign_language(text: str) -> bool:
    """True when ``text`` is confidently not Spanish.

    Used as a gate by the law task: an answer in Portuguese or English scores nothing even when
    its digits match. The test is the probability of Spanish itself (among :data:`LANGUAGES`),
    not the top label: short Spanish is often labelled Galician or Italian while Spanish keeps
    a fair share of the probability, whereas a Portuguese or English sentence leaves Spanish
    next to nothing. Answers of fewer than :data:`FOREIGN_MIN_WORDS` words are never rejected.
    """
    clean = unicodedata.normalize("NFC", _clean(text))
    if len(re.findall(r"[^\W\d_]{2,}", clean)) < FOREIGN_MIN_WORDS:
        return False
    spanish = dict(_identifier().rank(clean)).get("es", 0.0)
    return spanish < FOREIGN_MAX_SPANISH


# --------------------------------------------------------------------------- exact match


def exact_match(prediction: str, answer: str) -> float:
    """1.0 when both strings are equal after :func:`benchmark.textnorm.normalize`.

    Case, accents, punctuation and digits-vs-words are ignored:
    "42." == "cuarenta y dos" == "42".
    """
    gold = normalize(answer)
    if not gold:
        raise ValueError("exact_match needs a non-empty answer")
    return 1.0 if normalize(prediction) == gold else 0.0


# --------------------------------------------------------------------------- aggregation


def mean_defined(values: Iterable[float | None]) -> float:
    """Mean of the values that are not None (NaN when there are none)."""
    kept = [v for v in values if v is not None]
    if not kept:
        return math.nan
    return sum(kept) / len(kept)
