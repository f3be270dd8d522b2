"""Glue for the ecuador_law_es tasks: data loading, prompts and per-item scores.

Data rules live in ``benchmark/lawdata.py``, the typed key-fact scorer in
``benchmark/lawfacts.py`` and text metrics in ``benchmark/textmetrics.py``; this
file only wires them into lm-eval.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from benchmark import lawdata, lawfacts, textmetrics

lawdata.use_task_folder(Path(__file__).resolve().parent)   # this folder's data, wherever it is

FIELDS = ["id", "ley", "version", "articulos", "tipo", "tema", "pregunta", "respuesta",
          "hechos_clave", "opciones", "correcta", "conocimiento"]
PROMPT = ("Responde en español a esta pregunta sobre la legislación del Ecuador y cita el artículo "
          "en que se basa la respuesta.{texto}\n\nPregunta: {pregunta}\nRespuesta:")
MC_PROMPT = "Pregunta sobre la legislación del Ecuador{texto_mc}: {pregunta}\nRespuesta:"


def load_dataset(conocimiento: str | None = None, **_) -> datasets.DatasetDict:
    """``custom_dataset``: test and validation splits from this folder, whatever the working directory."""
    splits = {}
    for split in ("test", "validation"):
        rows = lawdata.load_split(split)  # refuses bad rows with file and line
        if conocimiento:
            rows = [r for r in rows if r["conocimiento"] == conocimiento]
        # Typed facts differ in their keys; the dataset stores them as JSON-shaped dicts per row.
        splits[split] = datasets.Dataset.from_list(
            [{**{k: r[k] for k in FIELDS}, "hechos_clave": lawdata.dump_facts(r["hechos_clave"])} for r in rows])
    return datasets.DatasetDict(splits)


def _text_named(doc: dict) -> dict:
    """The law and edition an item asks about, for the prompt (rows without them, e.g. a probe's bare
    question, get none)."""
    if not doc.get("ley") or not doc.get("version"):
        return {"texto": "", "texto_mc": ""}
    title = lawdata.laws()[doc["ley"]]["titulo"]
    return {"texto": f"\nTexto aplicable: {title} ({doc['version']}).", "texto_mc": f" ({title}, {doc['version']})"}


def doc_to_text(doc: dict) -> str:
    return PROMPT.format(pregunta=doc["pregunta"], **_text_named(doc))


def mc_doc_to_text(doc: dict) -> str:
    return MC_PROMPT.format(pregunta=doc["pregunta"], **_text_named(doc))


def fact_verdicts(answer: str, facts) -> list[tuple[dict, lawfacts.Verdict]]:
    facts = lawdata.load_facts(facts)
    return list(zip(facts, lawfacts.score_answer(answer, facts)))


RULE_ONLY_CREDIT = 0.5


def fact_scores(answer: str, facts) -> tuple[float, float]:
    """(recall, strict) of an answer against an item's key facts (benchmark.lawfacts decides each fact).

    recall: the share of the answer facts (``rol`` "respuesta") stated and not contradicted. An answer that
    states the whole rule (every ``fundamento`` fact) but not what was asked (a computed amount or date
    left out or miscomputed, say), and contradicts no key fact (an opposite verdict, a negated rule),
    earns ``RULE_ONLY_CREDIT``: the right rule, not applied, which is how the graded sets mark it. An
    answer whose yes/no verdict is the opposite one scores 0, whatever else it states. strict: everything asked is stated and nothing the answer says contradicts any key fact.
    """
    verdicts = fact_verdicts(answer, facts)
    asked = [v.score for f, v in verdicts if f.get("rol", "respuesta") == "respuesta"]
    grounds = [v for f, v in verdicts if f.get("rol", "respuesta") == "fundamento"]
    contradicted = any(v.contradicted for _, v in verdicts)
    recall = sum(asked) / len(asked) if asked else 0.0
    if grounds and not contradicted and all(v.score == 1.0 for v in grounds):
        recall = max(recall, RULE_ONLY_CREDIT)
    if any(f["tipo"] == "veredicto" and f.get("rol", "respuesta") == "respuesta" and v.contradicted
           for f, v in verdicts):
        recall = 0.0   # the opposite verdict makes the answer wrong, whatever else it gets right
    strict = float(bool(asked) and all(s == 1.0 for s in asked) and not contradicted)
    return recall, strict


def key_fact_recall(answer: str, facts) -> float:
    """The recall of ``fact_scores``."""
    return fact_scores(answer, facts)[0]


def process_results(doc: dict, results: list[str]) -> dict:
    answer = (results[0] or "").strip()
    correct, wrong = lawdata.citation_scores(answer, doc["ley"], doc["articulos"])
    recall, strict = fact_scores(answer, doc["hechos_clave"])
    if textmetrics.foreign_language(answer):
        # An answer in another language is no Spanish answer, whatever its digits match.
        recall, strict, correct = 0.0, 0.0, 0.0
    return {
        "hechos_recall": recall,
        "hechos_todos": strict,
        "cita_correcta": correct,
        "cita_erronea": wrong,
        "chrf_pp": (doc["respuesta"], answer),
        "bleu": (doc["respuesta"], answer),
        "rougeL": textmetrics.rouge_l(answer, doc["respuesta"]),
    }


def chrfpp_aggregate(items):
    return textmetrics.chrfpp_aggregate(items)


def bleu_aggregate(items):
    return textmetrics.bleu_aggregate(items)
