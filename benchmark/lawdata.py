"""Data rules for ``tasks/ecuador_law_es``: schema, grounding and decontamination.

Used three ways: by the task's loader (bad rows are refused with file and
line), by the test-suite, and by hand while writing data::

    python -m benchmark.lawdata                # check every split, print a report
    python -m benchmark.lawdata --corpus ../shared/corpus/ecuador

The corpus is read from ``$ECUADOR_CORPUS`` or ``../shared/corpus/ecuador``
beside the repository; it is only needed for the grounding checks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.textnorm import contains, ngrams, normalize, words

REPO = Path(__file__).resolve().parent.parent
TASK_DIR = REPO / "tasks" / "ecuador_law_es"
DATA_DIR = TASK_DIR / "data"
SPLITS = ("train", "validation", "test")
EVAL_FIELDS = {
    "id": str, "ley": str, "version": str, "articulos": list, "tipo": str, "tema": str,
    "pregunta": str, "respuesta": str, "hechos_clave": list, "opciones": list,
    "correcta": int, "conocimiento": str,
}
TRAIN_FIELDS = {"id": str, "ley": str, "version": str, "articulos": list, "pregunta": str, "respuesta": str}
TIPOS = {"basica", "compleja"}
CONOCIMIENTO = {"visto", "nuevo"}
VERBATIM_WORDS = 12   # a run this long copied from the corpus is refused
OVERLAP_N = 8         # test/validation questions share no 8-gram with training text
_ARTICLE_NUMBER = r"\d+(?:\.\d+)?(?:-[A-Z])?"
# "artículo 6", "art. 6", "Art 6-A"; plural forms may list several: "artículos 5 y 6", "arts. 5, 6 y 7".
_LIST_SEPARATOR = r"\s*(?:,\s*(?:[ye]\b)?|\b[ye]\b)\s*"   # ", " or " y " or ", y "
CITATION = re.compile(rf"\b(?:art[íi]culos|arts\.?)\s*({_ARTICLE_NUMBER}(?:{_LIST_SEPARATOR}{_ARTICLE_NUMBER})*)"
                      rf"|\bart(?:[íi]culo|\.)?\s*({_ARTICLE_NUMBER})", re.IGNORECASE)


class DataError(ValueError):
    """A bad row: the message names the file, the line and the field."""


def laws() -> dict:
    return json.loads((DATA_DIR / "laws.json").read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """Rows with their 1-based line numbers; any decoding problem names file and line."""
    raw = Path(path).read_bytes()
    rows = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not UTF-8 ({exc.reason} at byte {exc.start}); "
                            "re-save the file as UTF-8") from None
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: each line must be a JSON object")
        rows.append((lineno, row))
    return rows


def validate_row(row: dict, split: str, where: str, law_table: dict) -> None:
    """Schema rules for one row; raises DataError naming ``where`` (file:line) and the field."""
    fields = TRAIN_FIELDS if split == "train" else EVAL_FIELDS
    for name, kind in fields.items():
        if name not in row:
            raise DataError(f"{where}: missing field '{name}' (every {split} row needs {sorted(fields)})")
        if not isinstance(row[name], kind) or isinstance(row[name], bool):
            raise DataError(f"{where}: field '{name}' must be {kind.__name__}, got {type(row[name]).__name__}")
    if row["ley"] not in law_table:
        raise DataError(f"{where}: field 'ley' is '{row['ley']}', expected one of {sorted(law_table)}")
    if row["version"] != law_table[row["ley"]]["version"]:
        raise DataError(f"{where}: field 'version' must be '{law_table[row['ley']]['version']}' "
                        f"for ley '{row['ley']}' (see {DATA_DIR / 'laws.json'})")
    if not row["articulos"] or not all(isinstance(a, str) and a for a in row["articulos"]):
        raise DataError(f"{where}: field 'articulos' must be a non-empty list of article numbers as strings")
    for text_field in ("pregunta", "respuesta"):
        if not row[text_field].strip():
            raise DataError(f"{where}: field '{text_field}' is empty")
    if split == "train":
        return
    if row["tipo"] not in TIPOS:
        raise DataError(f"{where}: field 'tipo' is '{row['tipo']}', expected one of {sorted(TIPOS)}")
    if row["conocimiento"] not in CONOCIMIENTO:
        raise DataError(f"{where}: field 'conocimiento' is '{row['conocimiento']}', expected one of {sorted(CONOCIMIENTO)}")
    if not 1 <= len(row["hechos_clave"]) <= 3 or not all(isinstance(h, str) and h.strip() for h in row["hechos_clave"]):
        raise DataError(f"{where}: field 'hechos_clave' must hold 1 to 3 non-empty strings")
    if len(row["opciones"]) != 4 or not all(isinstance(o, str) and o.strip() for o in row["opciones"]):
        raise DataError(f"{where}: field 'opciones' must hold exactly 4 non-empty strings")
    if len({normalize(o) for o in row["opciones"]}) != 4:
        raise DataError(f"{where}: field 'opciones' has two options that are the same")
    if not 0 <= row["correcta"] <= 3:
        raise DataError(f"{where}: field 'correcta' is {row['correcta']}, it must be 0, 1, 2 or 3")


def load_split(split: str, data_dir: Path = DATA_DIR) -> list[dict]:
    """All rows of a split (``data/<split>/*.jsonl``), validated; ids must be unique."""
    law_table = laws()
    out, seen = [], {}
    files = sorted((Path(data_dir) / split).glob("*.jsonl"))
    if not files:
        raise DataError(f"{Path(data_dir) / split}: no *.jsonl files for split '{split}'")
    for path in files:
        for lineno, row in read_jsonl(path):
            where = f"{path}:{lineno}"
            validate_row(row, split, where, law_table)
            if row["id"] in seen:
                raise DataError(f"{where}: duplicate id '{row['id']}' (first seen at {seen[row['id']]})")
            seen[row["id"]] = where
            out.append({**row, "_where": where})
    return out


# ---------------------------------------------------------------- corpus ---

def corpus_dir() -> Path:
    return Path(os.environ.get("ECUADOR_CORPUS", REPO.parent / "shared" / "corpus" / "ecuador"))


@dataclass
class Corpus:
    """Article texts by (law, article number); several texts when a number repeats."""
    articles: dict = field(default_factory=lambda: defaultdict(list))
    shingles: set = field(default_factory=set)

    @classmethod
    def load(cls, directory: Path | None = None, verbatim_words: int = VERBATIM_WORDS) -> "Corpus":
        directory = Path(directory or corpus_dir())
        if not directory.is_dir():
            raise FileNotFoundError(f"law corpus not found at {directory}; set ECUADOR_CORPUS")
        corpus = cls()
        for path in sorted(directory.glob("*.jsonl")):
            for _, row in read_jsonl(path):
                corpus.articles[(path.stem, row["articulo"])].append(row["texto"])
                ws = raw_words(row["texto"])
                corpus.shingles |= {" ".join(ws[i:i + verbatim_words]) for i in range(len(ws) - verbatim_words + 1)}
        return corpus

    def text(self, ley: str, articulo: str) -> str:
        return "\n".join(self.articles.get((ley, articulo), []))


def raw_words(text: str) -> list[str]:
    """Tokenisation of the verbatim check (lower-case NFC ``\\w+``, as the repo hook does)."""
    return re.findall(r"\w+", unicodedata.normalize("NFC", text).lower())


def copied_run(text: str, corpus: Corpus, n: int = VERBATIM_WORDS) -> str | None:
    ws = raw_words(text)
    for i in range(len(ws) - n + 1):
        run = " ".join(ws[i:i + n])
        if run in corpus.shingles:
            return run
    return None


def cited_articles(text: str) -> list[str]:
    """Article numbers cited in ``text``, in order ("artículos 5 y 6" gives both)."""
    return [number for match in CITATION.finditer(text or "")
            for number in re.findall(_ARTICLE_NUMBER, match.group(1) or match.group(2))]


# ---------------------------------------------------------------- checks ---

def grounding_problems(rows: list[dict], corpus: Corpus) -> list[str]:
    problems = []
    for row in rows:
        where = row["_where"]
        for art in row["articulos"]:
            if (row["ley"], art) not in corpus.articles:
                problems.append(f"{where}: article {art} does not exist in {row['ley']}")
        joined = "\n".join(corpus.text(row["ley"], a) for a in row["articulos"])
        for fact in row.get("hechos_clave", []):
            if joined and not contains(joined, fact):
                problems.append(f"{where}: hecho_clave '{fact}' is not in the text of {row['ley']} art. {row['articulos']}")
        for name in ("pregunta", "respuesta", *(["opciones"] if "opciones" in row else [])):
            values = row[name] if isinstance(row[name], list) else [row[name]]
            for value in values:
                run = copied_run(value, corpus)
                if run:
                    problems.append(f"{where}: field '{name}' copies {VERBATIM_WORDS}+ words from the corpus: '{run}'")
        if "conocimiento" in row and not any(a in cited_articles(row["respuesta"]) for a in row["articulos"]):
            problems.append(f"{where}: field 'respuesta' must cite the article (e.g. 'artículo {row['articulos'][0]}')")
    return problems


def contamination_problems(train: list[dict], evaluated: list[dict]) -> list[str]:
    problems = []
    train_grams = set()
    for row in train:
        train_grams |= ngrams(words(row["pregunta"]), OVERLAP_N) | ngrams(words(row["respuesta"]), OVERLAP_N)
    taught = {(r["ley"], a) for r in train for a in r["articulos"]}
    for row in evaluated:
        shared = ngrams(words(row["pregunta"]), OVERLAP_N) & train_grams
        if shared:
            problems.append(f"{row['_where']}: question shares an {OVERLAP_N}-gram with training data: "
                            f"'{' '.join(next(iter(shared)))}'")
        cites = {(row["ley"], a) for a in row["articulos"]}
        if row["conocimiento"] == "nuevo" and cites & taught:
            problems.append(f"{row['_where']}: 'nuevo' item cites {sorted(cites & taught)}, which training pairs teach")
        if row["conocimiento"] == "visto" and not cites & taught:
            problems.append(f"{row['_where']}: 'visto' item cites {sorted(cites)}, which no training pair teaches")
    return problems


def answers_by_article(train: list[dict]) -> dict[tuple[str, str], list[str]]:
    """{(law, article): the training answers on it}; a pair citing two articles counts for both."""
    answers = defaultdict(list)
    for row in train:
        for a in row["articulos"]:
            answers[(row["ley"], a)].append(row["respuesta"])
    return answers


def taught_facts(train: list[dict], evaluated: list[dict]) -> tuple[int, int, list[str]]:
    """How many key facts of the ``visto`` items a training answer on the same article states.

    That is the ceiling of key-fact recall that memorising the training answers can reach:
    (facts stated, facts in all, where each missing one is). ``nuevo`` items are not counted.
    """
    answers = answers_by_article(train)
    stated, total, missing = 0, 0, []
    for row in evaluated:
        if row.get("conocimiento") != "visto":
            continue
        taught = [t for a in row["articulos"] for t in answers[(row["ley"], a)]]
        for fact in row["hechos_clave"]:
            total += 1
            if any(contains(t, fact) for t in taught):
                stated += 1
            else:
                missing.append(f"{row.get('_where') or row['id']}: '{fact}'")
    return stated, total, missing


def balance_problems(rows: list[dict], split: str) -> list[str]:
    problems = []
    if not rows:
        return problems
    pos = Counter(r["correcta"] for r in rows)
    for slot in range(4):
        share = pos[slot] / len(rows)
        if not 0.20 <= share <= 0.30:
            problems.append(f"{split}: correct option in slot {slot} for {share:.0%} of items (must be 20-30%)")
    longest = Counter()
    for r in rows:
        lengths = [len(o) for o in r["opciones"]]
        if lengths.count(max(lengths)) == 1:
            longest[lengths.index(max(lengths)) == r["correcta"]] += 1
    if longest[True] and not longest[False]:
        problems.append(f"{split}: the correct option is always the longest")
    return problems


def report(corpus: Corpus | None) -> tuple[dict, list[str]]:
    splits = {s: load_split(s) for s in SPLITS}
    problems = contamination_problems(splits["train"], splits["test"] + splits["validation"])
    for s in ("test", "validation"):
        problems += balance_problems(splits[s], s)
    if corpus is not None:
        for s in SPLITS:
            problems += grounding_problems(splits[s], corpus)
    return splits, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None, help="law corpus folder (default: $ECUADOR_CORPUS or ../shared/corpus/ecuador)")
    parser.add_argument("--no-corpus", action="store_true", help="skip the grounding checks")
    args = parser.parse_args(argv)
    corpus = None if args.no_corpus else Corpus.load(args.corpus)
    try:
        splits, problems = report(corpus)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    law_table = laws()
    for s, rows in splits.items():
        by_law = Counter(r["ley"] for r in rows)
        tax = sum(n for ley, n in by_law.items() if law_table[ley]["grupo"] == "tributario")
        arts = {(r["ley"], a) for r in rows for a in r["articulos"]}
        extra = ""
        if s != "train":
            extra = f" tipo={dict(Counter(r['tipo'] for r in rows))} conocimiento={dict(Counter(r['conocimiento'] for r in rows))}"
        print(f"{s}: {len(rows)} rows, {len(arts)} articles, tax share {tax / max(len(rows), 1):.0%}{extra}")
        print(f"  by law: {dict(sorted(by_law.items()))}")
    stated, total, _ = taught_facts(splits["train"], splits["test"])
    print(f"test 'visto': {stated} of {total} key facts ({stated / max(total, 1):.1%}) are stated in a training "
          "answer on the same article (the recall that memorising the training answers could reach)")
    for p in problems:
        print("problem:", p)
    print(f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
