"""instruct_es_ifeval: Spanish verifiable instructions, scored by lm-eval's own
multilingual IFEval checkers (``lm_eval.tasks.ifeval.multilingual``).

What this module adds around lm-eval (it does NOT re-implement any checker or
metric; ``process_results`` and ``agg_inst_level_acc`` below are lm-eval's):

* Offline import.  lm-eval's modules call ``spacy.load("xx_sent_ud_sm")``
  (es and ca checkers) and ``spacy.load("ca_core_news_sm")`` (Catalan util,
  imported by the shared registry) at import time, and ``from iso639 import
  Lang``.  While *we* import them, a package that is not installed is replaced
  by a documented stand-in (an installed real package always wins):
    - ``xx_sent_ud_sm``   -> ``spacy.blank("xx")`` + ``sentencizer``
    - ``ca_core_news_sm`` -> ``spacy.blank("ca")`` + ``sentencizer``
    - ``iso639.Lang``     -> a table of the languages langdetect knows; it is
      only used to write the checker's description text, never for scoring.
  ``es_core_news_sm`` is never replaced.  ``spacy.load`` and ``sys.modules``
  are restored right after the import.  The stand-in only matters for
  ``number_sentences`` on answers that langdetect does not classify as
  Spanish; README_ifeval.md gives the measurement (``standin_report``).
* langdetect is seeded (``DetectorFactory.seed = 0``) so the language-based
  verdicts are reproducible run to run.
* Loading, validating and normalising an IFEval-format JSONL file
  (``load_ifeval_file``), with errors that name the file, line and field.
  Spanish relation values are mapped to the two values the checkers accept;
  see ``normalise_relation`` and README_ifeval.md for the table.
* ``custom_dataset``: the data file is ``data/ifeval_es.jsonl`` next to this
  module, or the file named by ``--metadata '{"ifeval_file": PATH}'`` or by
  the environment variable ``INSTRUCT_ES_IFEVAL_FILE`` (in that order).

Run ``python ifeval_utils.py --check [FILE]`` to validate a file and
``python ifeval_utils.py --standin-report`` to redo the stand-in measurement.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import re
import string
import sys
import types
import unicodedata
from pathlib import Path

import spacy

TASK_DIR = Path(__file__).resolve().parent
DEFAULT_FILE = TASK_DIR / "data" / "ifeval_es.jsonl"
ENV_VAR = "INSTRUCT_ES_IFEVAL_FILE"
METADATA_KEY = "ifeval_file"

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Offline stand-ins used only while lm-eval's modules are imported.
# --------------------------------------------------------------------------
SPACY_STANDINS = {"xx_sent_ud_sm": "xx", "ca_core_news_sm": "ca"}
STANDINS_USED: set[str] = set()

# ISO 639-1 codes langdetect can return, with English names (as iso639-lang).
_LANG_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Modern Greek (1453-)", "en": "English",
    "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi",
    "ne": "Nepali (macrolanguage)", "nl": "Dutch", "no": "Norwegian",
    "pa": "Panjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "so": "Somali",
    "sq": "Albanian", "sv": "Swedish", "sw": "Swahili (macrolanguage)",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog",
    "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
}


def standin_pipeline(lang: str):
    """The offline stand-in: a blank spaCy pipeline with a rule sentencizer."""
    nlp = spacy.blank(lang)
    nlp.add_pipe("sentencizer")
    return nlp


def _iso639_standin() -> types.ModuleType:
    mod = types.ModuleType("iso639")
    mod.__doc__ = "instruct_es stand-in for iso639-lang (Lang(code).name only)."

    class Lang:  # noqa: D401 - mimics iso639.Lang for ISO 639-1 codes
        def __init__(self, code: str):
            key = str(code).lower()
            if key not in _LANG_NAMES:
                raise ValueError(f"unknown ISO 639-1 language code {code!r}")
            self.pt1 = key
            self.name = _LANG_NAMES[key]

    mod.Lang = Lang
    return mod


@contextlib.contextmanager
def _offline_imports():
    real_load = spacy.load

    def load(name, *args, **kwargs):
        if (
            isinstance(name, str)
            and name in SPACY_STANDINS
            and not spacy.util.is_package(name)
        ):
            STANDINS_USED.add(name)
            return standin_pipeline(SPACY_STANDINS[name])
        return real_load(name, *args, **kwargs)

    spacy.load = load
    iso_added = importlib.util.find_spec("iso639") is None
    if iso_added:
        sys.modules["iso639"] = _iso639_standin()
        STANDINS_USED.add("iso639")
    try:
        yield
    finally:
        spacy.load = real_load
        if iso_added:
            sys.modules.pop("iso639", None)


with _offline_imports():
    from lm_eval.tasks.ifeval.multilingual import instructions_registry
    from lm_eval.tasks.ifeval.multilingual import utils as _ml_utils
    from lm_eval.tasks.ifeval.multilingual.instruction_utils import (
        es_instructions_util,
    )
    from lm_eval.tasks.ifeval.multilingual.instructions import es_instructions

import langdetect  # noqa: E402

langdetect.DetectorFactory.seed = 0

# lm-eval's scoring, reused as is.
process_results = _ml_utils.process_results
agg_inst_level_acc = _ml_utils.agg_inst_level_acc

ES_INSTRUCTION_DICT = {
    k: v for k, v in instructions_registry.INSTRUCTION_DICT.items() if k.startswith("es:")
}
ES_IDS = sorted(ES_INSTRUCTION_DICT)

# --------------------------------------------------------------------------
# Relation values.
# --------------------------------------------------------------------------
AT_LEAST, LESS_THAN = es_instructions._COMPARISON_RELATION  # "at least", "less than"

# relation kwarg -> the count kwarg it qualifies, per instruction id.
RELATION_PAIRS = {
    "es:length_constraints:number_sentences": ("relation", "num_sentences"),
    "es:length_constraints:number_words": ("relation", "num_words"),
    "es:special_character:tildes": ("relation", "num_words"),
    "es:keywords:frequency": ("relation", "frequency"),
    "es:keywords:letter_frequency": ("let_relation", "let_frequency"),
    "es:change_case:capital_word_frequency": ("capital_relation", "capital_frequency"),
    "es:detectable_content:number_placeholders": ("relation", "num_placeholders"),
    "es:detectable_format:number_highlighted_sections": ("relation", "num_highlights"),
    "es:detectable_format:multiple_sections": ("relation", "num_sections"),
}
# These checkers accept a relation but always test "count >= N" (see the
# NOTE in their check_following), so an upper bound cannot be expressed.
AT_LEAST_ONLY = {
    "es:detectable_content:number_placeholders",
    "es:detectable_format:number_highlighted_sections",
    "es:detectable_format:multiple_sections",
}

# In lm-eval's es: checkers "less than N" is tested as count <= N (not < N).
# phrase -> (relation the checker gets, shift added to N)
RELATION_MAP = {
    "at least": (AT_LEAST, 0),
    "al menos": (AT_LEAST, 0),
    "por lo menos": (AT_LEAST, 0),
    "como minimo": (AT_LEAST, 0),
    "minimo": (AT_LEAST, 0),
    "more than": (AT_LEAST, 1),
    "mas de": (AT_LEAST, 1),
    "less than": (LESS_THAN, 0),  # lm-eval es semantics: <= N; kept unchanged
    "at most": (LESS_THAN, 0),
    "como maximo": (LESS_THAN, 0),
    "como mucho": (LESS_THAN, 0),
    "maximo": (LESS_THAN, 0),
    "a lo sumo": (LESS_THAN, 0),
    "no mas de": (LESS_THAN, 0),
    "menos de": (LESS_THAN, -1),
}
_ENGLISH_VALUES = {AT_LEAST, LESS_THAN}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.strip().lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text)


def normalise_relation(value: str, count: int) -> tuple[str, int]:
    """Map a relation phrase and its count to what lm-eval's checkers test.

    >>> normalise_relation("como máximo", 5)
    ('less than', 5)
    >>> normalise_relation("menos de", 5)
    ('less than', 4)
    >>> normalise_relation("más de", 5)
    ('at least', 6)
    """
    folded = _fold(value)
    if folded not in RELATION_MAP:
        raise KeyError(value)
    relation, shift = RELATION_MAP[folded]
    return relation, count + shift


# --------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------
class IfevalDataError(ValueError):
    """A row of an IFEval-format file that cannot be scored as written."""

    def __init__(self, path, line: int, field: str, message: str):
        self.path, self.line, self.field = str(path), line, field
        super().__init__(f"{path}:{line}: field '{field}': {message}")


_INT_KWARGS = {
    "num_sentences", "num_words", "num_placeholders", "num_highlights",
    "num_sections", "num_paragraphs", "nth_paragraph", "num_bullets",
    "frequency", "let_frequency", "capital_frequency",
}
_LIST_KWARGS = {"keywords", "forbidden_words"}
_LANGDETECT_CODES = set(_LANG_NAMES)


def accepted_kwargs(instruction_id: str) -> list[str]:
    """Keyword names the checker's build_description accepts."""
    cls = ES_INSTRUCTION_DICT[instruction_id]
    params = inspect.signature(cls.build_description).parameters
    return [n for n, p in params.items() if n != "self" and p.kind != p.VAR_KEYWORD]


def required_kwargs(instruction_id: str) -> list[str]:
    """Keys the checker would otherwise fill with a random value."""
    cls = ES_INSTRUCTION_DICT[instruction_id]
    return list(cls(instruction_id).get_instruction_args_keys())


def _same(given, built) -> bool:
    if isinstance(given, str) and isinstance(built, str):
        return given.strip().lower() == built.strip().lower()
    if isinstance(given, list) and isinstance(built, list):
        return sorted(set(given)) == sorted(set(built))
    return given == built


def _check_kwargs(iid, raw, prompt, err, where):
    if not isinstance(raw, dict):
        raise err(where, f"must be an object of keyword arguments for {iid}")
    accepted = accepted_kwargs(iid)
    # lm-eval's process_results drops None (and other falsy) values.
    kw = {k: v for k, v in raw.items() if v is not None}
    for name, value in kw.items():
        f = f"{where}.{name}"
        if name not in accepted:
            raise err(f, f"{iid} does not accept '{name}' (it accepts: "
                         f"{', '.join(accepted) or 'no kwargs'})")
        if isinstance(value, bool) or (not value and value != 0):
            raise err(f, f"empty value {value!r}")
        if name in _INT_KWARGS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise err(f, f"must be an integer, got {value!r}")
        elif name in _LIST_KWARGS:
            if not isinstance(value, list) or not all(
                isinstance(x, str) and x.strip() for x in value
            ):
                raise err(f, f"must be a list of non-empty strings, got {value!r}")
        elif not isinstance(value, str) or not value.strip():
            raise err(f, f"must be a non-empty string, got {value!r}")
    for name in required_kwargs(iid):
        if name not in kw:
            raise err(f"{where}.{name}", f"missing; {iid} needs "
                      f"{', '.join(required_kwargs(iid))} (else lm-eval draws a random value)")

    if iid in RELATION_PAIRS:
        rel_key, num_key = RELATION_PAIRS[iid]
        try:
            relation, count = normalise_relation(kw[rel_key], kw[num_key])
        except KeyError:
            raise err(f"{where}.{rel_key}", f"unknown relation {kw[rel_key]!r}; use one of "
                      f"{', '.join(sorted(RELATION_MAP))} (accents optional)") from None
        if iid in AT_LEAST_ONLY and relation != AT_LEAST:
            if _fold(kw[rel_key]) in _ENGLISH_VALUES:
                log.warning("%s: %s checks 'at least' whatever the relation; "
                            "'%s' is scored as 'at least'", where, iid, kw[rel_key])
            else:
                raise err(f"{where}.{rel_key}", f"{iid} can only check a lower bound "
                          f"(lm-eval tests count >= N), not {kw[rel_key]!r}")
        kw[rel_key], kw[num_key] = relation, count

    for name, value in kw.items():
        if name in _INT_KWARGS and value < 1:
            raise err(f"{where}.{name}", f"{value} after normalisation; counts must be >= 1 "
                      "(lm-eval drops 0 and the checker would draw a random value)")
    if "letter" in kw and not re.fullmatch(r"[A-Za-z]", kw["letter"].strip()):
        raise err(f"{where}.letter", f"must be one ASCII letter a-z, got {kw['letter']!r}")
    if "nth_paragraph" in kw and kw["nth_paragraph"] > kw["num_paragraphs"]:
        raise err(f"{where}.nth_paragraph", f"{kw['nth_paragraph']} > num_paragraphs "
                  f"{kw['num_paragraphs']}")
    if "language" in kw and kw["language"] not in _LANGDETECT_CODES:
        raise err(f"{where}.language", f"{kw['language']!r} is not an ISO 639-1 code "
                  "that langdetect can return")
    if "end_phrase" in kw and kw["end_phrase"].strip().endswith("."):
        raise err(f"{where}.end_phrase", "must not end with '.' (lm-eval drops the answer's "
                  "final '.' before comparing, so it could never match)")
    if "first_word" in kw and any(c in string.punctuation for c in kw["first_word"]):
        raise err(f"{where}.first_word", "must not contain ASCII punctuation (lm-eval strips "
                  "it from the paragraph before comparing)")
    if "prompt_to_repeat" in kw and kw["prompt_to_repeat"].strip() not in prompt:
        raise err(f"{where}.prompt_to_repeat", "must be a literal part of the prompt")
    for name in ("keywords", "forbidden_words", "keyword"):  # lm-eval uses them as regexes
        words = kw.get(name, [])
        for word in [words] if isinstance(words, str) else words:
            try:
                re.compile(word)
            except re.error as exc:
                raise err(f"{where}.{name}", f"{word!r} is not a valid pattern: {exc}") from None

    checker = ES_INSTRUCTION_DICT[iid](iid)
    try:
        checker.build_description(**kw)
    except Exception as exc:  # noqa: BLE001 - reported with file and line
        raise err(where, f"{iid}.build_description refused {kw}: {exc}") from None
    built = checker.get_instruction_args() or {}
    for name, value in kw.items():
        if name in built and not _same(value, built[name]):
            raise err(f"{where}.{name}", f"{iid} replaced {value!r} by {built[name]!r}")
    return kw


def validate_row(obj, path="<row>", line: int = 1) -> dict:
    """Check one parsed row and return it with normalised kwargs."""

    def err(field, message):
        return IfevalDataError(path, line, field, message)

    if not isinstance(obj, dict):
        raise err("<row>", "each line must be a JSON object")
    key = obj.get("key")
    if key is None:
        raise err("key", "missing")
    if not isinstance(key, int) or isinstance(key, bool):
        raise err("key", f"must be an integer, got {key!r}")
    prompt = obj.get("prompt")
    if prompt is None:
        raise err("prompt", "missing")
    if not isinstance(prompt, str) or not prompt.strip():
        raise err("prompt", "must be a non-empty string")
    ids = obj.get("instruction_id_list")
    if not isinstance(ids, list) or not ids:
        raise err("instruction_id_list", "must be a non-empty list of instruction ids")
    for i, iid in enumerate(ids):
        if iid not in ES_INSTRUCTION_DICT:
            raise err(f"instruction_id_list[{i}]", f"unknown instruction id {iid!r} "
                      "(use the es: ids of lm-eval's multilingual IFEval)")
    kwargs = obj.get("kwargs")
    if not isinstance(kwargs, list):
        raise err("kwargs", "must be a list with one object per instruction id")
    if len(kwargs) != len(ids):
        raise err("kwargs", f"has {len(kwargs)} entries but instruction_id_list has {len(ids)}")
    norm = [_check_kwargs(iid, kw, prompt, err, f"kwargs[{i}]") for i, (iid, kw)
            in enumerate(zip(ids, kwargs))]
    row = {"key": key, "prompt": prompt, "instruction_id_list": list(ids), "kwargs": norm}
    for extra in ("tema", "respuesta_ejemplo"):
        if extra in obj:
            if not isinstance(obj[extra], str):
                raise err(extra, "must be a string")
            row[extra] = obj[extra]
    return row


def load_ifeval_file(path) -> list[dict]:
    """Read, validate and normalise an IFEval-format JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IFEval data file not found: {path}")
    from benchmark.jsonl import read_jsonl

    rows, seen = [], {}
    for line_no, obj in read_jsonl(path, error=lambda p, n, problem: IfevalDataError(p, n, "<json>", problem)):
        row = validate_row(obj, path, line_no)
        if row["key"] in seen:
            raise IfevalDataError(path, line_no, "key", f"duplicate key {row['key']} "
                                  f"(first on line {seen[row['key']]})")
        seen[row["key"]] = line_no
        rows.append(row)
    if not rows:
        raise IfevalDataError(path, 0, "<file>", "no rows")
    return rows


def resolve_data_file(path=None) -> Path:
    """Explicit path, else $INSTRUCT_ES_IFEVAL_FILE, else data/ifeval_es.jsonl."""
    chosen = path or os.environ.get(ENV_VAR) or DEFAULT_FILE
    return Path(chosen).expanduser().resolve()


def custom_dataset(**kwargs):
    """lm-eval ``custom_dataset`` hook (gets the task metadata as kwargs)."""
    import datasets

    rows = load_ifeval_file(resolve_data_file(kwargs.get(METADATA_KEY)))
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def score(doc: dict, response: str) -> dict:
    """lm-eval's process_results for one already-normalised doc."""
    return process_results(doc, [response])


# --------------------------------------------------------------------------
# Stand-in measurement (numbers are written in README_ifeval.md).
# --------------------------------------------------------------------------
def standin_report(path=DEFAULT_FILE) -> dict:
    """Compare the stand-in sentencizer with es_core_news_sm on the example
    answers (``respuesta_ejemplo``) of a data file.

    Sentence counts use the text NumberOfSentences counts (list markers
    removed).  A number_sentences verdict "flips" when the count of the
    stand-in and that of es_core_news_sm fall on different sides of the
    row's threshold; "routed" counts the answers langdetect does not call
    Spanish, the only ones the checker sends to the multilingual pipeline.
    """
    standin = standin_pipeline("xx")
    rows = [r for r in load_ifeval_file(path) if r.get("respuesta_ejemplo")]
    clean = re.compile(r"(^\s*[\d]+\.\s*)|(^\s*[-*]\s*)", flags=re.MULTILINE)
    rep = dict.fromkeys(
        ["answers", "same_sentence_count", "standin_fewer", "standin_more",
         "prose_answers", "prose_same_sentence_count", "number_sentences_instructions",
         "routed_to_multilingual_pipeline", "verdicts_that_would_flip"], 0)
    abs_diff = 0
    for row in rows:
        text = clean.sub("", row["respuesta_ejemplo"])
        n_es = es_instructions_util.count_sentences(text)
        n_xx = len(list(standin(text).sents))
        rep["answers"] += 1
        rep["same_sentence_count"] += n_es == n_xx
        rep["standin_fewer"] += n_xx < n_es
        rep["standin_more"] += n_xx > n_es
        abs_diff += abs(n_es - n_xx)
        if "\n" not in text.strip():
            rep["prose_answers"] += 1
            rep["prose_same_sentence_count"] += n_es == n_xx
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
            if iid != "es:length_constraints:number_sentences":
                continue
            rep["number_sentences_instructions"] += 1
            try:
                lang = langdetect.detect(row["respuesta_ejemplo"].lower())
            except langdetect.LangDetectException:
                lang = "es"
            rep["routed_to_multilingual_pipeline"] += lang != "es"
            t = kw["num_sentences"]
            ok = [n >= t if kw["relation"] == AT_LEAST else n <= t for n in (n_es, n_xx)]
            rep["verdicts_that_would_flip"] += ok[0] != ok[1]
    rep["mean_abs_difference"] = round(abs_diff / max(rep["answers"], 1), 2)
    rep["standins_in_use"] = sorted(STANDINS_USED)
    return rep


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", nargs="?", const=str(DEFAULT_FILE), metavar="FILE")
    ap.add_argument("--standin-report", action="store_true")
    a = ap.parse_args()
    if a.check:
        print(f"{a.check}: {len(load_ifeval_file(a.check))} rows OK")
    if a.standin_report:
        print(json.dumps(standin_report(), indent=2, ensure_ascii=False))
