"""benchmark/instructdata.py: the constraint-following training rows are checked with the task's own code."""

from __future__ import annotations

import json

from benchmark import instructdata
from benchmark.jsonl import read_jsonl


def _row(rid, prompt, answer, ids, kwargs):
    return {"id": rid, "categoria": "restricciones", "tema": "cocina",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "instruction_id_list": ids, "kwargs": kwargs}


def _write(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = _row("ifr-x1", "Da tres consejos para conservar el pan fresco. No uses ninguna coma en tu respuesta.",
            "Guarda el pan en una bolsa de tela. Evita dejarlo dentro de la refrigeradora. Congela en rebanadas "
            "lo que no vayas a comer pronto.", ["es:punctuation:no_comma"], [{}])


def test_a_row_that_follows_its_instructions_passes(tmp_path):
    problems, counts = instructdata.check_files([_write(tmp_path, [GOOD])])
    assert problems == [] and counts["rows"] == 1
    assert counts["rows_per_id"] == {"es:punctuation:no_comma": 1}
    assert "es:punctuation:no_comma" not in counts["ids_never_used"]


def test_an_answer_that_breaks_its_instruction_is_reported(tmp_path):
    bad = _row("ifr-x2", "Explica cómo se prepara una limonada en exactamente 3 puntos de lista.",
               "* Exprime los limones.\n* Mezcla el jugo con agua fría.", ["es:detectable_format:number_bullet_lists"],
               [{"num_bullets": 3}])
    problems, _ = instructdata.check_files([_write(tmp_path, [GOOD, bad])])
    assert len(problems) == 1 and "rows.jsonl:2" in problems[0]
    assert "does not follow es:detectable_format:number_bullet_lists" in problems[0]


def test_bad_kwargs_repeated_ids_and_prompts_are_reported(tmp_path):
    unknown = _row("ifr-x3", "Escribe algo breve.", "Algo breve.", ["es:no:such_id"], [{}])
    twin = {**GOOD}   # same id, same prompt
    problems, _ = instructdata.check_files([_write(tmp_path, [GOOD, unknown, twin])])
    text = "\n".join(problems)
    assert "unknown instruction id" in text and "repeats" in text and "the same prompt as" in text


def test_a_row_copying_a_test_prompt_is_reported(tmp_path):
    _, test_row = next(iter(read_jsonl(instructdata.DATA / "ifeval_es.jsonl")))
    copied = _row("ifr-x4", test_row["prompt"], GOOD["messages"][1]["content"], ["es:punctuation:no_comma"], [{}])
    problems, _ = instructdata.check_files([_write(tmp_path, [copied])])
    assert any("8-gram(s) with the instruct_es test sets" in p for p in problems)


def test_the_committed_training_rows_have_no_problem():
    files = sorted(instructdata.TRAIN_DIR.glob("*.jsonl"))
    assert files, "tasks/instruct_es/data/train_ifeval/ holds no file"
    problems, counts = instructdata.check_files(files)
    assert problems == [], problems[:5]
    assert counts["ids_never_used"] == []
