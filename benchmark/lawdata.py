"""Data rules for ``tasks/ecuador_law_es``: schema, grounding and decontamination.

Used three ways: by the task's loader (bad rows are refused with file and
line), by the test-suite, and by hand while writing data::

    python -m benchmark.lawdata                      # check every split, print a report
    python -m benchmark.lawdata --law codigo_trabajo # the report for one law's rows only
    python -m benchmark.lawdata --mc-baselines       # answer-only heuristics on the multiple choice

The corpus is the task's own copy, ``tasks/ecuador_law_es/corpus/`` (``$ECUADOR_CORPUS``
overrides); it is only needed for the grounding checks.
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

from benchmark import jsonl, lawfacts
from benchmark.textnorm import ngrams, normalize, words

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
# "artículo 6", "art. 6", "Art 6-A"; plural forms list several: "artículos 5 y 6", "arts. 5, 6 y 7";
# ranges: "artículos 5 a 8", "arts. 5 al 8". Numbers in words are read as digits first (text2num).
_LIST_SEPARATOR = r"\s*(?:,\s*(?:[ye]\b)?|\b[ye]\b|\ba(?:l)?\b)\s*"   # ", ", " y ", ", y ", " a ", " al "
CITATION = re.compile(rf"\b(?:art[íi]culos|arts\.?)\s*({_ARTICLE_NUMBER}(?:{_LIST_SEPARATOR}{_ARTICLE_NUMBER})*)"
                      rf"|\bart(?:[íi]culo|\.)?\s*({_ARTICLE_NUMBER})", re.IGNORECASE)
MAX_RANGE = 30   # "arts. 5 al 8" expands; a longer span is read as its two ends only


class DataError(ValueError):
    """A bad row: the message names the file, the line and the field."""


def use_task_folder(folder: Path) -> None:
    """Read the data (and the corpus) of the task folder at ``folder``.

    The task's ``utils.py`` calls it with its own folder, so the task works wherever the folder is,
    also when this package is installed from a wheel and the repository is not beside it.
    """
    global TASK_DIR, DATA_DIR
    TASK_DIR = Path(folder).resolve()
    DATA_DIR = TASK_DIR / "data"


def laws() -> dict:
    return json.loads((DATA_DIR / "laws.json").read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """Rows with their 1-based line numbers (benchmark.jsonl); any problem names file and line."""
    return jsonl.read_jsonl(path, error=lambda p, line, problem: DataError(f"{p}:{line}: {problem}"))


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
    if not 1 <= len(row["hechos_clave"]) <= 4:
        raise DataError(f"{where}: field 'hechos_clave' must hold 1 to 4 typed facts")
    for i, fact in enumerate(row["hechos_clave"]):
        try:
            lawfacts.validate_fact(fact, f"{where}: field 'hechos_clave'[{i}]")
        except lawfacts.FactError as exc:
            raise DataError(str(exc)) from None
    if len(row["opciones"]) != 4 or not all(isinstance(o, str) and o.strip() for o in row["opciones"]):
        raise DataError(f"{where}: field 'opciones' must hold exactly 4 non-empty strings")
    if len({normalize(o) for o in row["opciones"]}) != 4:
        raise DataError(f"{where}: field 'opciones' has two options that are the same")
    if not 0 <= row["correcta"] <= 3:
        raise DataError(f"{where}: field 'correcta' is {row['correcta']}, it must be 0, 1, 2 or 3")


def load_split(split: str, data_dir: Path | None = None) -> list[dict]:
    """All rows of a split (``data/<split>/*.jsonl``), validated; ids must be unique."""
    data_dir = Path(data_dir or DATA_DIR)
    law_table = laws()
    out, seen = [], {}
    files = sorted((Path(data_dir) / split).glob("*.jsonl"))
    if split == "train":   # rewordings of the training pairs (each asks a pair's fact in other words)
        files += sorted((Path(data_dir) / "train_parafrasis").glob("*.jsonl"))
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
    return Path(os.environ.get("ECUADOR_CORPUS", TASK_DIR / "corpus"))  # TASK_DIR as set by use_task_folder


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
    """Tokenisation of the verbatim check: lower case, accents folded, punctuation dropped."""
    return re.findall(r"\w+", lawfacts.fold(unicodedata.normalize("NFC", text)))


def copied_run(text: str, corpus: Corpus, n: int = VERBATIM_WORDS) -> str | None:
    ws = raw_words(text)
    for i in range(len(ws) - n + 1):
        run = " ".join(ws[i:i + n])
        if run in corpus.shingles:
            return run
    return None


def cited_articles(text: str) -> list[str]:
    """Article numbers cited in ``text``, in order ("artículos 5 y 6", "arts. 5 al 7", "artículo quince")."""
    return [number for _, numbers in cited_spans(text) for number in numbers]


def cited_spans(text: str) -> list[tuple[int, list[str]]]:
    """(offset in the digit-normalised text, article numbers) for each citation in ``text``."""
    from text_to_num import alpha2digit

    text = alpha2digit(text or "", "es", threshold=0) if re.search(r"(?i)\bart", text or "") else (text or "")
    out = []
    for match in CITATION.finditer(text):
        body = match.group(1) or match.group(2)
        numbers = re.findall(_ARTICLE_NUMBER, body)
        for a, b in re.findall(rf"({_ARTICLE_NUMBER})\s+al?\s+({_ARTICLE_NUMBER})", body):
            if a.isdigit() and b.isdigit() and 0 < int(b) - int(a) <= MAX_RANGE:
                numbers += [str(n) for n in range(int(a) + 1, int(b))]
        out.append((match.end(), numbers))
    return out


def _named_law(text: str, after: int, table: dict) -> str | None:
    """The law named right after a citation ("artículo 5 del Código del Trabajo"), by its aliases."""
    window = lawfacts.fold(text[after:after + 90])
    best = None
    for ley, info in table.items():
        for alias in info.get("alias", []):
            m = re.search(rf"\b{re.escape(lawfacts.fold(alias))}\b", window)
            if m and m.start() < 25 and (best is None or len(alias) > best[1]):
                best = (ley, len(alias))
    return best[0] if best else None


def citation_scores(answer: str, ley: str, articulos: list[str]) -> tuple[float, float]:
    """(cites a right article of the right law, cites articles but none of them right).

    A citation counts for the item's law unless another law is named right after it
    ("artículo 5 del Código Tributario" on a labour item is a wrong citation). The two
    texts of the Constitution share their names, so either one counts for the other.
    """
    from text_to_num import alpha2digit

    table = laws()
    text = alpha2digit(answer or "", "es", threshold=0) if re.search(r"(?i)\bart", answer or "") else (answer or "")
    same = {ley} | ({"constitucion_2008", "constitucion_vigente_2021"} if ley.startswith("constitucion") else set())
    right_any = cited = False
    for end, numbers in cited_spans(answer):
        named = _named_law(text, end, table)
        law_ok = named is None or named in same
        cited = cited or bool(numbers)
        if law_ok and set(numbers) & set(articulos):
            right_any = True
    return float(right_any), float(cited and not right_any)


def dump_facts(facts: list[dict]) -> str:
    """Typed facts as the JSON string the lm-eval dataset stores (their keys differ by type)."""
    return json.dumps(facts, ensure_ascii=False)


def load_facts(facts) -> list[dict]:
    return json.loads(facts) if isinstance(facts, str) else list(facts)


# ---------------------------------------------------------------- checks ---

def grounding_problems(rows: list[dict], corpus: Corpus) -> list[str]:
    problems = []
    for row in rows:
        where = row["_where"]
        for art in row["articulos"]:
            if (row["ley"], art) not in corpus.articles:
                problems.append(f"{where}: article {art} does not exist in {row['ley']}")
        joined = "\n".join(corpus.text(row["ley"], a) for a in row["articulos"])
        if joined and "hechos_clave" in row:
            problems += fact_problems(row, joined)
        for name in ("pregunta", "respuesta", *(["opciones"] if "opciones" in row else [])):
            values = row[name] if isinstance(row[name], list) else [row[name]]
            for value in values:
                run = copied_run(value, corpus)
                if run:
                    problems.append(f"{where}: field '{name}' copies {VERBATIM_WORDS}+ words from the corpus: '{run}'")
        if "conocimiento" in row and not any(a in cited_articles(row["respuesta"]) for a in row["articulos"]):
            problems.append(f"{where}: field 'respuesta' must cite the article (e.g. 'artículo {row['articulos'][0]}')")
    return problems


def _numbers_in(text: str) -> set:
    analysis = lawfacts.analyse(text)
    return {m.value for m in analysis.numbers} | {f for f, _, _ in analysis.fractions}


def fact_problems(row: dict, article_text: str) -> list[str]:
    """Typed key facts: grounded in the article (or computed from it), not answered by the question,
    all stated by the reference answer."""
    from fractions import Fraction

    where, problems = row["_where"], []
    article = lawfacts.analyse(article_text)
    article_keys = {t.key for t in article.tokens} | {t.text for t in article.tokens}
    article_numbers = {m.value for m in article.numbers} | {f for f, _, _ in article.fractions}
    question_numbers = _numbers_in(row["pregunta"])
    for i, fact in enumerate(row["hechos_clave"]):
        label = f"{where}: hecho_clave[{i}] ({lawfacts.fact_label(fact)})"
        kind = fact["tipo"]
        if "calculo" in fact:
            for operand in lawfacts.calculo_operands(fact["calculo"]):
                value = Fraction(operand)
                if value not in article_numbers | question_numbers | {0, 1, 100}:
                    problems.append(f"{label}: 'calculo' operand {operand} is neither in the article nor in the question")
        elif kind == "concepto":
            if not any(all(k in article_keys for k in lawfacts._form_keys(f)[0]) for f in fact["formas"]):
                problems.append(f"{label}: no form has all its words in the text of {row['ley']} art. {row['articulos']}")
        elif kind == "cantidad" and Fraction(str(fact["valor"])) not in article_numbers:
            problems.append(f"{label}: {fact['valor']} is not a number of {row['ley']} art. {row['articulos']}; "
                            "add a 'calculo' that derives it")
        elif kind == "fraccion" and Fraction(str(fact["valor"])) not in article_numbers:
            problems.append(f"{label}: {fact['valor']} is not a fraction of the article; add a 'calculo'")
        elif kind == "fecha" and not lawfacts._date_verdict(article, fact).stated:
            problems.append(f"{label}: the date is not in the article; add a 'calculo' that derives it")
        if kind != "veredicto" and lawfacts.fact_verdict(row["pregunta"], fact).stated:
            problems.append(f"{label}: the question itself states this fact; an echo of the question would earn it")
        verdict = lawfacts.fact_verdict(row["respuesta"], fact)
        if verdict.score < 1:
            why = "contradicts" if verdict.contradicted else "does not state"
            problems.append(f"{label}: the reference answer {why} its own key fact")
    if "opciones" in row:
        for j, option in enumerate(row["opciones"]):
            if j != row["correcta"] and all(
                    lawfacts.fact_verdict(option, f).score == 1 for f in row["hechos_clave"]):
                problems.append(f"{where}: wrong option {j} ({option[:60]!r}) states every key fact; "
                                "the facts do not tell a right answer from a wrong one")
    return problems


def mc_baselines(rows: list[dict]) -> dict[str, float]:
    """Accuracy of answer-only heuristics on the multiple choice (ties share the credit).

    Each should sit near chance (25%): a higher figure means the options give the answer away.
    """
    def content(text):
        return {t.key for t in lawfacts.analyse(text).tokens
                if t.text not in lawfacts.STOPWORDS and re.search(r"\w", t.text)}

    def pick(scores, correct, best=max):
        target = best(scores)
        winners = [i for i, v in enumerate(scores) if v == target]
        return (correct in winners) / len(winners)

    totals = Counter()
    for r in rows:
        opts, c = r["opciones"], r["correcta"]
        lengths = [len(o) for o in opts]
        sets = [content(o) for o in opts]
        question = content(r["pregunta"])

        def jaccard(a, b):
            return len(a & b) / len(a | b) if a | b else 0.0

        similarity = [sum(jaccard(sets[i], sets[j]) for j in range(4) if j != i) for i in range(4)]
        totals["shortest"] += pick(lengths, c, min)
        totals["longest"] += pick(lengths, c, max)
        totals["odd_one_out"] += pick(similarity, c, min)
        totals["question_overlap"] += pick([len(s & question) for s in sets], c, max)
        totals["most_similar"] += pick(similarity, c, max)
    return {k: v / len(rows) for k, v in totals.items()} if rows else {}


MC_BASELINE_RANGE = (0.19, 0.31)   # 25% +- 6 points


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
    (facts stated, facts in all, where each missing one is). ``nuevo`` items are not counted, nor are
    results computed for a question's own scenario (facts with a ``calculo``).
    """
    answers = answers_by_article(train)
    stated, total, missing = 0, 0, []
    for row in evaluated:
        if row.get("conocimiento") != "visto":
            continue
        taught = [t for a in row["articulos"] for t in answers[(row["ley"], a)]]
        for fact in row["hechos_clave"]:
            if "calculo" in fact:
                continue   # a result computed for the question's scenario: the rule is taught, not the number
            total += 1
            if any(lawfacts.fact_verdict(t, fact).score == 1 for t in taught):
                stated += 1
            else:
                missing.append(f"{row.get('_where') or row['id']}: {lawfacts.fact_label(fact)}")
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


def report(corpus: Corpus | None, laws_: list[str] | None = None) -> tuple[dict, list[str]]:
    splits = {s: load_split(s) for s in SPLITS}
    mine = {s: [r for r in rows if not laws_ or r["ley"] in laws_] for s, rows in splits.items()}
    problems = contamination_problems(splits["train"], mine["test"] + mine["validation"])
    for s in ("test", "validation"):
        problems += balance_problems(splits[s], s)
    if corpus is not None:
        for s in SPLITS:
            problems += grounding_problems(mine[s], corpus)
    return splits, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="law corpus folder (default: $ECUADOR_CORPUS or tasks/ecuador_law_es/corpus)")
    parser.add_argument("--no-corpus", action="store_true", help="skip the grounding checks")
    parser.add_argument("--law", nargs="+", choices=sorted(laws()), metavar="LAW",
                        help=f"check only these laws' rows (grounding, facts); one of {sorted(laws())}")
    parser.add_argument("--missing-taught", action="store_true",
                        help="list the key facts of 'visto' test items that no training answer on the same article states")
    parser.add_argument("--mc-baselines", action="store_true",
                        help="print the answer-only multiple-choice baselines per split (and per law with --law)")
    args = parser.parse_args(argv)
    if args.missing_taught:
        train = load_split("train")
        test = [r for r in load_split("test") if not args.law or r["ley"] in args.law]
        stated, total, missing = taught_facts(train, test)
        for line in missing:
            print("missing:", line)
        print(f"{stated} of {total} 'visto' key facts ({stated / max(total, 1):.1%}) are stated by a training answer "
              "on the same article")
        return 0
    if args.mc_baselines:
        lo, hi = MC_BASELINE_RANGE
        for s in ("test", "validation"):
            rows = [r for r in load_split(s) if not args.law or r["ley"] in args.law]
            figures = mc_baselines(rows)
            flags = {k: ("" if lo <= v <= hi or k == "most_similar" else "  <- outside 25% +- 6") for k, v in figures.items()}
            print(f"{s} ({len(rows)} items): " + ", ".join(f"{k} {v:.1%}{flags[k]}" for k, v in figures.items()))
        return 0
    corpus = None if args.no_corpus else Corpus.load(args.corpus)
    try:
        splits, problems = report(corpus, args.law)
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
