"""Glue for the ecuador_law_es tasks: data loading and per-item scores.

Data rules live in ``benchmark/lawdata.py`` and text metrics in
``benchmark/textmetrics.py``; this file only wires them into lm-eval.
"""

from __future__ import annotations

import datasets

from benchmark import lawdata, textmetrics
from benchmark.textnorm import contains

FIELDS = ["id", "ley", "version", "articulos", "tipo", "tema", "pregunta", "respuesta",
          "hechos_clave", "opciones", "correcta", "conocimiento"]
PROMPT = ("Responde en español a esta pregunta sobre la legislación del Ecuador y cita el artículo "
          "en que se basa la respuesta.\n\nPregunta: {pregunta}\nRespuesta:")


def load_dataset(conocimiento: str | None = None, **_) -> datasets.DatasetDict:
    """``custom_dataset``: test and validation splits from this folder, whatever the working directory."""
    splits = {}
    for split in ("test", "validation"):
        rows = lawdata.load_split(split)  # refuses bad rows with file and line
        if conocimiento:
            rows = [r for r in rows if r["conocimiento"] == conocimiento]
        splits[split] = datasets.Dataset.from_list([{k: r[k] for k in FIELDS} for r in rows])
    return datasets.DatasetDict(splits)


def doc_to_text(doc: dict) -> str:
    return PROMPT.format(pregunta=doc["pregunta"])


def mc_doc_to_text(doc: dict) -> str:
    return f"Pregunta sobre la legislación del Ecuador: {doc['pregunta']}\nRespuesta:"


def key_fact_recall(answer: str, facts: list[str]) -> float:
    """Share of key facts found in the answer (accents, case and numbers in words normalised)."""
    return sum(contains(answer, fact) for fact in facts) / len(facts) if facts else 0.0


def citation_scores(answer: str, articulos: list[str]) -> tuple[float, float]:
    """(cites one of the right articles, cites only articles that are not the right ones)."""
    cited = set(lawdata.cited_articles(answer))
    right = bool(cited & set(articulos))
    wrong = bool(cited) and not right
    return float(right), float(wrong)


def process_results(doc: dict, results: list[str]) -> dict:
    answer = (results[0] or "").strip()
    correct, wrong = citation_scores(answer, doc["articulos"])
    recall = key_fact_recall(answer, doc["hechos_clave"])
    if textmetrics.spanish_score(answer) == 0.0:
        # Empty, or identified as another language: "noventa dias" in Portuguese is no Spanish answer.
        recall, correct = 0.0, 0.0
    return {
        "chrf_pp": (doc["respuesta"], answer),
        "bleu": (doc["respuesta"], answer),
        "rougeL": textmetrics.rouge_l(answer, doc["respuesta"]),
        "hechos_recall": recall,
        "cita_correcta": correct,
        "cita_erronea": wrong,
    }


def chrfpp_aggregate(items):
    return textmetrics.chrfpp_aggregate(items)


def bleu_aggregate(items):
    return textmetrics.bleu_aggregate(items)
