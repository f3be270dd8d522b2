"""Checks of ``instruct_es``'s constraint-following training data (``tasks/instruct_es/data/train_ifeval/``).

    python -m benchmark.instructdata                       # every file; problems, then counts
    python -m benchmark.instructdata --files my_rows.jsonl # other files in the same format

A row is a chat conversation the trainer reads (``messages``: one user turn, one assistant turn) that
also carries, in the format of ``instruct_es_ifeval``'s data, the verifiable instructions its prompt
gives (``instruction_id_list``: lm-eval's ``es:`` ids; ``kwargs``: one object per id)::

    {"id": "ifr-00001", "categoria": "restricciones", "tema": "...",
     "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "instruction_id_list": ["es:punctuation:no_comma"], "kwargs": [{}]}

Each row is checked with the task's own code: its instructions validate as a test row would
(``ifeval_utils.validate_row``: known ids, kwargs the checker accepts, relations it can test), and its
assistant turn passes every instruction under lm-eval's strict checkers (``ifeval_utils.score``), so
the adapter learns only answers that the test would count as followed. Against the test sets: no
8-gram (lower-cased words, accents folded) shared with any ``instruct_es_ifeval`` prompt or example
answer, or any ``instruct_es_gen`` prompt or reference; no prompt repeated in the training data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from benchmark.jsonl import read_jsonl
from benchmark.textnorm import ngrams, words

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tasks" / "instruct_es" / "data"
TRAIN_DIR = DATA / "train_ifeval"
OVERLAP_N = 8


def _ifeval_utils():
    from benchmark.tasks import load_task_module

    return load_task_module(REPO / "tasks" / "instruct_es" / "ifeval_utils.py", "instruct_es_ifeval_utils")


def test_grams() -> set:
    """8-grams of every test prompt and reference of instruct_es (IFEval and gen)."""
    grams = set()
    for _, row in read_jsonl(DATA / "ifeval_es.jsonl"):
        for text in (row.get("prompt", ""), row.get("respuesta_ejemplo", "")):
            grams |= ngrams(words(text), OVERLAP_N)
    for _, row in read_jsonl(DATA / "gen_test.jsonl"):
        for value in row.values():
            if isinstance(value, str):
                grams |= ngrams(words(value), OVERLAP_N)
            elif isinstance(value, list):   # chat turns
                for m in value:
                    if isinstance(m, dict) and isinstance(m.get("content"), str):
                        grams |= ngrams(words(m["content"]), OVERLAP_N)
    return grams


def check_files(files: list[Path]) -> tuple[list[str], dict]:
    """(problems, counts) over the rows of ``files``."""
    U = _ifeval_utils()
    grams = test_grams()
    problems, ids, prompts, per_id, n_rows, n_instr = [], {}, {}, Counter(), 0, Counter()
    for path in files:
        for line, row in read_jsonl(path):
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
            n_rows += 1
            rid = row.get("id")
            if not isinstance(rid, str) or not rid:
                problems.append(f"{where}: field 'id' must be a non-empty string")
            elif rid in ids:
                problems.append(f"{where}: field 'id' {rid!r} repeats {ids[rid]}")
            else:
                ids[rid] = where
            msgs = row.get("messages")
            if (not isinstance(msgs, list) or len(msgs) != 2 or [m.get("role") for m in msgs] != ["user", "assistant"]
                    or not all(isinstance(m.get("content"), str) and m["content"].strip() == m["content"] and m["content"]
                               for m in msgs)):
                problems.append(f"{where}: field 'messages' must be one user turn then one assistant turn, each a "
                                "non-empty string without leading or trailing whitespace")
                continue
            prompt, answer = msgs[0]["content"], msgs[1]["content"]
            try:
                doc = U.validate_row({"key": n_rows, "prompt": prompt, "instruction_id_list":
                                      row.get("instruction_id_list"), "kwargs": row.get("kwargs")}, path, line)
            except (U.IfevalDataError, KeyError, TypeError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            result = U.score(doc, answer)
            failed = [iid for iid, ok in zip(doc["instruction_id_list"], result["inst_level_strict_acc"]) if not ok]
            if failed:
                problems.append(f"{where}: the assistant turn does not follow {', '.join(failed)} (lm-eval's strict check)")
            key = " ".join(words(prompt))
            if key in prompts:
                problems.append(f"{where}: the same prompt as {prompts[key]}")
            prompts.setdefault(key, where)
            shared = (ngrams(words(prompt), OVERLAP_N) | ngrams(words(answer), OVERLAP_N)) & grams
            if shared:
                problems.append(f"{where}: shares {len(shared)} {OVERLAP_N}-gram(s) with the instruct_es test sets, "
                                f"e.g. '{' '.join(sorted(shared)[0])}'")
            per_id.update(doc["instruction_id_list"])
            n_instr[len(doc["instruction_id_list"])] += 1
    counts = {"rows": n_rows, "instructions_per_row": dict(sorted(n_instr.items())),
              "rows_per_id": dict(sorted(per_id.items())),
              "ids_never_used": sorted(set(U.ES_IDS) - set(per_id))}
    return problems, counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", nargs="+", type=Path, help="files to check (default: every train_ifeval/*.jsonl)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = p.parse_args(argv)
    files = [f.resolve() for f in args.files] if args.files else sorted(TRAIN_DIR.glob("*.jsonl"))
    if not files:
        print(f"no files to check (none in {TRAIN_DIR})", file=sys.stderr)
        return 1
    problems, counts = check_files(files)
    for line in problems:
        print(line)
    print(json.dumps(counts, ensure_ascii=False, indent=None if args.json else 1))
    print(f"{len(problems)} problem(s) in {counts['rows']} rows of {len(files)} file(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
