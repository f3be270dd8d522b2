"""Agreement of the law task's key-fact scorer with hand grades, and the task's quality figures.

Two graded sets in ``tasks/ecuador_law_es/graded/`` hold candidate answers to test items in four
kinds (``correcta_libre``, ``correcta_breve``, ``erronea_parecida``, ``parcial``), written without
sight of the key facts and graded against the cited article by a grader who did not write them
(or the facts): 1 (right), 0.5 (partly right), 0 (wrong).

* ``dev.jsonl`` (110 items): read while the scorer's general rules were developed; the key facts
  of the labour, transit and tax-law (LRTI and its Reglamento) items were also revised with these
  grades in view. Its figures are optimistic.
* ``heldout.jsonl`` (105 other items): written after the key facts were final and not used to
  tune anything. Its figures are the ones the datasheet reports.

This module scores every answer with the task's own ``process_results`` and compares::

    python -m benchmark.lawagree            # agreement, kappa, mean score per kind, per half
    python -m benchmark.lawagree --show-disagreements
    python -m benchmark.lawagree --json     # the same figures as JSON

Binary agreement counts an answer as passing when its score (or grade) is at least 0.5. The module also prints the language gate's figures (correct options scored as answers, and
answers in Portuguese, Italian and English) and the multiple-choice baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from benchmark import lawdata, textmetrics

GRADED_DIR = lawdata.TASK_DIR / "graded"
SETS = {"heldout": GRADED_DIR / "heldout.jsonl", "dev": GRADED_DIR / "dev.jsonl"}
KINDS = ("correcta_libre", "correcta_breve", "erronea_parecida", "parcial")
GRADES = (0, 0.5, 1)
# What the scorer is meant to reach, and what it does reach on both sets (the tests keep the floors;
# the datasheet reports the measured figures against the targets).
TARGETS = {"agreement": 0.95, "kappa": 0.85, "correct_mean": 0.90, "wrong_mean": 0.10}
FLOORS = {"agreement": 0.90, "kappa": 0.75, "correct_mean": 0.92, "wrong_mean": 0.16}


def load_graded(path: Path) -> list[dict]:
    rows = []
    for lineno, row in lawdata.read_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("id", "kind", "answer", "grade"):
            if name not in row:
                raise lawdata.DataError(f"{where}: missing field '{name}'")
        if row["kind"] not in KINDS:
            raise lawdata.DataError(f"{where}: field 'kind' is {row['kind']!r}, expected one of {KINDS}")
        if row["grade"] not in GRADES:
            raise lawdata.DataError(f"{where}: field 'grade' is {row['grade']!r}, expected one of {GRADES}")
        rows.append({**row, "_where": where})
    return rows


def _utils():
    from benchmark.tasks import load_task_module

    return load_task_module(lawdata.TASK_DIR / "utils.py", "ecuador_law_es_utils")


def score_graded(rows: list[dict]) -> list[dict]:
    """Each graded answer with the scorer's ``hechos_recall`` and ``hechos_todos``."""
    utils = _utils()
    items = {r["id"]: r for r in lawdata.load_split("test")}
    out = []
    for row in rows:
        if row["id"] not in items:
            raise lawdata.DataError(f"{row['_where']}: id {row['id']!r} is not a test item")
        doc = {**items[row["id"]], "hechos_clave": lawdata.dump_facts(items[row["id"]]["hechos_clave"])}
        scores = utils.process_results(doc, [row["answer"]])
        out.append({**row, "score": scores["hechos_recall"], "strict": scores["hechos_todos"]})
    return out


def agreement(scored: list[dict]) -> dict:
    """Binary agreement, Cohen's kappa (scikit-learn), mean score per kind."""
    from sklearn.metrics import cohen_kappa_score

    if not scored:
        return {}
    human = [int(r["grade"] >= 0.5) for r in scored]
    machine = [int(r["score"] >= 0.5) for r in scored]
    by_kind = defaultdict(list)
    for r in scored:
        by_kind[r["kind"]].append(r["score"])
    correct = by_kind["correcta_libre"] + by_kind["correcta_breve"]
    return {
        "answers": len(scored),
        "items": len({r["id"] for r in scored}),
        "agreement": sum(h == m for h, m in zip(human, machine)) / len(scored),
        "kappa": float(cohen_kappa_score(human, machine)) if len(set(human) | set(machine)) > 1 else float("nan"),
        "mean_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "correct_mean": sum(correct) / len(correct) if correct else float("nan"),
        "wrong_mean": (sum(by_kind["erronea_parecida"]) / len(by_kind["erronea_parecida"])
                       if by_kind["erronea_parecida"] else float("nan")),
        "grades": {str(g): sum(r["grade"] == g for r in scored) for g in GRADES},
    }


FOREIGN_ANSWERS = (
    # Answers a model might give in the languages it drifts into; each must score 0.
    "O prazo é de trinta dias, segundo o artigo 116 da lei.",
    "A obrigação tributária prescreve no prazo de cinco anos, contados desde a data em que era exigível.",
    "Não, o empregador não pode reter a remuneração durante as duas semanas anteriores ao parto.",
    "Il termine è di trenta giorni, secondo l'articolo 116 della legge.",
    "Il Presidente della Repubblica può modificare le tariffe doganali secondo l'articolo 3.",
    "No, il datore di lavoro non può trattenere la retribuzione durante le due settimane prima del parto.",
    "The deadline is thirty days, according to article 116 of the law.",
    "The President of the Republic sets customs tariffs, under article 3 of the Tax Code.",
    "No, the employer cannot withhold wages during the two weeks before childbirth.",
)


def language_gate() -> dict:
    """Correct options used as answers (none may be zeroed) and foreign answers (all must be)."""
    rows = lawdata.load_split("test")
    zeroed = [r["id"] for r in rows if textmetrics.foreign_language(r["opciones"][r["correcta"]])]
    foreign_kept = [a for a in FOREIGN_ANSWERS if not textmetrics.foreign_language(a)]
    return {"correct_options": len(rows), "correct_options_zeroed": len(zeroed), "zeroed_ids": zeroed,
            "foreign_answers": len(FOREIGN_ANSWERS), "foreign_answers_not_zeroed": len(foreign_kept)}


BLIND_ANSWERS = ("No.", "Sí.")


def blind_answers(test: list[dict], utils) -> dict[str, float]:
    """Mean key-fact score of one fixed answer to every test question: what guessing a verdict earns."""
    out = {}
    for answer in BLIND_ANSWERS:
        scores = [utils.key_fact_recall(answer, r["hechos_clave"]) for r in test]
        out[answer] = sum(scores) / len(scores)
    return out


def figures(sets: dict[str, Path] = SETS) -> dict:
    scored = {name: score_graded(load_graded(path)) for name, path in sets.items()}
    test = lawdata.load_split("test")
    utils = _utils()
    correct_options = [utils.key_fact_recall(r["opciones"][r["correcta"]], r["hechos_clave"]) for r in test]
    return {
        **{name: agreement(rows) for name, rows in scored.items()},
        "language_gate": language_gate(),
        "mc_baselines": {s: lawdata.mc_baselines(lawdata.load_split(s)) for s in ("test", "validation")},
        "correct_option_as_answer_mean": sum(correct_options) / len(correct_options),
        "blind_answers": blind_answers(test, utils),
        "_scored": scored,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graded", type=Path, nargs="+", help="graded answer files (default: the held-out and dev sets)")
    parser.add_argument("--show-disagreements", action="store_true", help="list answers where scorer and grade differ")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--old-rev", metavar="REV",
                        help="also score the answers with the 1.x lexical scorer of git revision REV (benchmark.lawrescore)")
    args = parser.parse_args(argv)
    try:
        result = figures({p.stem: p for p in args.graded} if args.graded else SETS)
    except lawdata.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scored = result.pop("_scored")
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return 0
    for name in scored:
        a = result[name]
        print(f"{name}: {a['answers']} answers on {a['items']} items; binary agreement {a['agreement']:.1%}, "
              f"Cohen's kappa {a['kappa']:.3f}; mean score correct kinds {a['correct_mean']:.3f}, "
              f"wrong-but-similar {a['wrong_mean']:.3f}; by kind "
              + ", ".join(f"{k} {v:.3f}" for k, v in a["mean_by_kind"].items()))
    if args.old_rev:
        from benchmark.lawrescore import old_facts, old_score

        facts = old_facts(args.old_rev)
        for name, rows in scored.items():
            a = agreement([{**r, "score": old_score(r["answer"], facts[r["id"]])} for r in rows])
            print(f"{name}, 1.x scorer of {args.old_rev}: binary agreement {a['agreement']:.1%}, Cohen's kappa "
                  f"{a['kappa']:.3f}; mean score correct kinds {a['correct_mean']:.3f}, wrong-but-similar "
                  f"{a['wrong_mean']:.3f}")
    g = result["language_gate"]
    print(f"language gate: {g['correct_options_zeroed']} of {g['correct_options']} correct options zeroed as "
          f"answers; {g['foreign_answers'] - g['foreign_answers_not_zeroed']} of {g['foreign_answers']} "
          "Portuguese/Italian/English answers zeroed")
    print(f"correct option used as a short answer: mean key-fact score {result['correct_option_as_answer_mean']:.3f}")
    print("the same answer to every test question: " + ", ".join(
        f"{a!r} scores {v:.3f}" for a, v in result["blind_answers"].items()))
    for split, b in result["mc_baselines"].items():
        print(f"multiple choice, {split}: " + ", ".join(f"{k} {v:.1%}" for k, v in b.items()) + " (chance 25%)")
    if args.show_disagreements:
        for name, rows in scored.items():
            for r in rows:
                if (r["score"] >= 0.5) != (r["grade"] >= 0.5):
                    print(f"{name} {r['id']} {r['kind']}: grade {r['grade']} score {r['score']:.2f}: {r['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
