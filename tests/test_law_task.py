"""tasks/ecuador_law_es: the data (sizes, grounding, decontamination, balance), the scorers, bad rows,
and the stock ``lm_eval`` command line on the prepared 8-bit SmolLM2 with a PEFT adapter.

The grounding checks read the task's own copy of the law corpus,
``tasks/ecuador_law_es/corpus/`` (``$ECUADOR_CORPUS`` overrides), through benchmark.lawdata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmark import lawdata, lawfacts
from benchmark.tasks import load_task_module
from benchmark.lawdata import DataError
from benchmark.registry import REPO

TASKS = REPO / "tasks"
TASK_DIR = TASKS / "ecuador_law_es"
# The six laws; the two texts of the Constitution count as one law.
SAME_LAW = {"constitucion_2008": "constitucion", "constitucion_vigente_2021": "constitucion"}
SIX_LAWS = {"constitucion", "codigo_trabajo", "ley_transporte_terrestre_transito", "codigo_tributario",
            "ley_regimen_tributario_interno", "reglamento_lrti"}


def _load_utils():
    return load_task_module(TASK_DIR / "utils.py", "ecuador_law_es_utils")


utils = _load_utils()


@pytest.fixture(scope="module")
def splits() -> dict:
    return {s: lawdata.load_split(s) for s in lawdata.SPLITS}


@pytest.fixture(scope="module")
def corpus():
    return lawdata.Corpus.load(lawdata.corpus_dir())


# ------------------------------------------------------------------------------------ the data ---

def test_split_sizes_and_coverage(splits):
    test = splits["test"]
    assert len(test) >= 400, f"test has {len(test)} items, needs >= 400"
    assert len(splits["validation"]) >= 100, f"validation has {len(splits['validation'])} items, needs >= 100"
    assert len(splits["train"]) >= 1500, f"train has {len(splits['train'])} pairs, needs >= 1500"
    articles = {(SAME_LAW.get(r["ley"], r["ley"]), a) for r in test for a in r["articulos"]}
    assert {law for law, _ in articles} == SIX_LAWS, "the test split must cover all six laws"
    assert len(articles) >= 150, f"test covers {len(articles)} distinct articles, needs >= 150"


def test_test_split_shares(splits):
    test, law_table = splits["test"], lawdata.laws()
    tax = sum(law_table[r["ley"]]["grupo"] == "tributario" for r in test) / len(test)
    assert tax >= 0.25, f"tax law is {tax:.0%} of test, needs >= 25%"
    known = Counter(r["conocimiento"] for r in test)
    for part in ("visto", "nuevo"):
        assert known[part] / len(test) >= 0.40, f"'{part}' is {known[part] / len(test):.0%} of test, needs >= 40%"


def test_every_item_is_grounded_in_the_corpus(splits, corpus):
    for split, rows in splits.items():
        problems = lawdata.grounding_problems(rows, corpus)
        assert problems == [], f"{split}: {len(problems)} grounding problems, first: {problems[:5]}"


def test_evaluation_splits_are_decontaminated(splits):
    problems = lawdata.contamination_problems(splits["train"], splits["test"] + splits["validation"])
    assert problems == [], f"{len(problems)} contamination problems, first: {problems[:5]}"
    # Stated directly as well: 'nuevo' never taught, 'visto' always taught.
    taught = {(r["ley"], a) for r in splits["train"] for a in r["articulos"]}
    for row in splits["test"] + splits["validation"]:
        cites = {(row["ley"], a) for a in row["articulos"]}
        assert bool(cites & taught) == (row["conocimiento"] == "visto"), row["_where"]


@pytest.mark.parametrize("split", ["test", "validation"])
def test_multiple_choice_balance(split, splits):
    rows = splits[split]
    assert lawdata.balance_problems(rows, split) == []
    share = Counter(r["correcta"] for r in rows)
    assert all(0.20 <= share[slot] / len(rows) <= 0.30 for slot in range(4)), share
    longest = [max(range(4), key=lambda i: len(r["opciones"][i])) == r["correcta"] for r in rows]
    assert not all(longest), "the correct option is always the longest"


def _row(**changes) -> dict:
    row = {"_where": "made-up.jsonl:1", "ley": "codigo_trabajo", "articulos": ["15"], "conocimiento": "visto",
           "pregunta": "¿Cuál es el plazo?", "respuesta": "Según el artículo 15, noventa días.",
           "correcta": 0, "opciones": ["a", "bb", "ccc", "dddd"]}
    return {**row, **changes}


@pytest.mark.parametrize(("rows", "expected"), [
    ([_row(pregunta="Cuánto puede durar como máximo el período de prueba en un contrato de plazo indefinido")],
     "shares an 8-gram with training data"),
    ([_row(conocimiento="nuevo")], "'nuevo' item cites [('codigo_trabajo', '15')], which training pairs teach"),
    ([_row(articulos=["9999"])], "'visto' item cites [('codigo_trabajo', '9999')], which no training pair teaches"),
], ids=["copied-question", "nuevo-taught", "visto-untaught"])
def test_contamination_check_catches(rows, expected, splits):
    problems = lawdata.contamination_problems(splits["train"], rows)
    assert any(expected in p and p.startswith("made-up.jsonl:1: ") for p in problems), problems


def test_visto_key_facts_are_taught_by_training_answers(splits):
    """'visto' means taught: most of its key facts are stated in a training answer on the same article,
    so memorising the training split could reach them (the ceiling reported by `python -m benchmark.lawdata`)."""
    stated, total, missing = lawdata.taught_facts(splits["train"], splits["test"])
    assert total > 300
    assert stated / total >= 0.80, missing[:10]
    # The count is real: a fact no training answer states is missing, a stated one is not.
    train = [{"ley": "codigo_trabajo", "articulos": ["15"], "respuesta": "Hasta noventa (90) días de prueba."}]
    days = {"tipo": "cantidad", "valor": 90, "unidad": "dia"}
    fifteen = {"tipo": "cantidad", "valor": 15, "unidad": "dia"}
    rows = [_row(id="a", hechos_clave=[days, fifteen]), _row(id="b", conocimiento="nuevo", hechos_clave=[days]),
            _row(id="c", articulos=["16"], hechos_clave=[days])]
    assert lawdata.taught_facts(train, rows) == (1, 3, ["made-up.jsonl:1: cantidad=15 dia",
                                                         "made-up.jsonl:1: cantidad=90 dia"])


@pytest.mark.parametrize(("correct", "options", "expected"), [
    ([0] * 8, ["a", "bb", "ccc", "dddd"], "correct option in slot 0 for 100% of items"),
    ([0, 1, 2, 3] * 2, None, "the correct option is always the longest"),
], ids=["always-slot-0", "always-longest"])
def test_balance_check_catches(correct, options, expected):
    rows = []
    for c in correct:
        opts = options or [("x" * 9 if i == c else "y" * (i + 1)) for i in range(4)]
        rows.append(_row(correcta=c, opciones=opts))
    assert any(expected in p for p in lawdata.balance_problems(rows, "made-up"))


# ------------------------------------------------------------------------------------ scorers ---

DOC = {
    "ley": "codigo_trabajo",
    "articulos": ["15"],
    "hechos_clave": lawdata.dump_facts([{"tipo": "cantidad", "valor": 90, "unidad": "dia"},
                                        {"tipo": "concepto", "formas": ["contrato de plazo indefinido",
                                                                        "contrato indefinido"]}]),
    "respuesta": "Según el artículo 15 del Código del Trabajo, en el primer contrato de plazo indefinido el período "
                 "de prueba dura como máximo noventa días.",
}


@pytest.mark.parametrize(("answer", "recall", "right", "wrong"), [
    (DOC["respuesta"], 1.0, 1.0, 0.0),
    ("Art. 15: en un contrato de plazo indefinido, la prueba dura hasta 90 días.", 1.0, 1.0, 0.0),
    ("Según el ARTICULO 15, en el contrato de plazo indefinido la prueba es de noventa dias.", 1.0, 1.0, 0.0),
    ("Lo regulan los artículos 14 y 15: contrato de plazo indefinido, noventa días.", 1.0, 1.0, 0.0),
    ("Conforme a los arts. 14, 15 y 16, son noventa días.", 0.5, 1.0, 0.0),
    ("Según el artículo 51 del Código del Trabajo, en el contrato de plazo indefinido son noventa días.", 1.0, 0.0, 1.0),
    ("Según el artículo 15, son sesenta días.", 0.0, 1.0, 0.0),
    ("Noventa días.", 0.5, 0.0, 0.0),
    ("According to article 15 of the Labour Code, the probation period of a first open-ended contract lasts at "
     "most ninety days.", 0.0, 0.0, 0.0),
    ("Segundo o artigo 15 do Código do Trabalho, no primeiro contrato por prazo indeterminado o período de "
     "experiência dura no máximo noventa dias.", 0.0, 0.0, 0.0),
    ("Segundo o art. 15 do Código do Trabalho, o período de experiência de um contrato por prazo indeterminado "
     "dura no máximo noventa dias.", 0.0, 0.0, 0.0),
    ("", 0.0, 0.0, 0.0),
    ("   \n", 0.0, 0.0, 0.0),
    ("Según el artículo 15 del Código del Trabajo, en el contrato indefinido no son noventa días sino treinta.",
     0.5, 1.0, 0.0),
    ("Según el artículo 15 del Código Tributario, en el contrato indefinido son noventa días.", 1.0, 0.0, 1.0),
    ("Según el artículo quince, en un contrato indefinido la prueba dura 90 días.", 1.0, 1.0, 0.0),
], ids=["perfect", "digits-for-words", "no-accents-upper-case", "artículos-list", "arts-list-one-fact",
        "wrong-article", "wrong-number", "no-citation", "english", "portuguese", "portuguese-art-15", "empty",
        "blank", "contradicted-number", "right-article-wrong-law", "article-in-words"])
def test_qa_scores_on_hand_made_answers(answer, recall, right, wrong):
    scores = utils.process_results(DOC, [answer])
    assert scores["hechos_recall"] == pytest.approx(recall)
    assert (scores["cita_correcta"], scores["cita_erronea"]) == (right, wrong)
    if answer == DOC["respuesta"]:
        assert scores["rougeL"] == pytest.approx(1.0)
        assert utils.chrfpp_aggregate([scores["chrf_pp"]]) == pytest.approx(100.0)
        assert utils.bleu_aggregate([scores["bleu"]]) == pytest.approx(100.0)
    if not answer.strip():
        assert scores["rougeL"] == 0.0 and utils.chrfpp_aggregate([scores["chrf_pp"]]) == 0.0


CALC_FACTS = lawdata.dump_facts([
    {"tipo": "cantidad", "valor": 300, "unidad": "usd", "calculo": "20 * 15", "rol": "respuesta"},
    {"tipo": "cantidad", "valor": 15, "unidad": "dia", "rol": "fundamento"}])


@pytest.mark.parametrize(("answer", "recall", "strict"), [
    ("Debe pagar quince días de remuneración: 15 × 20 = 300 dólares (art. 190).", 1.0, 1.0),
    ("USD 300.", 1.0, 1.0),
    ("Debe pagar una suma equivalente a quince días de remuneración (art. 190).", 0.5, 0.0),
    ("Debe pagar quince días de remuneración, es decir 450 dólares.", 0.5, 0.0),
    ("Debe pagar treinta días de remuneración.", 0.0, 0.0),
    ("Nada, porque no hay sanción.", 0.0, 0.0),
], ids=["rule-and-result", "result-only", "rule-only-half", "rule-and-wrong-result", "wrong-rule", "wrong"])
def test_stating_the_rule_without_its_result_earns_half(answer, recall, strict):
    """Right rule, not applied or misapplied: half credit, as the graders mark it; a wrong rule: none."""
    assert utils.fact_scores(answer, CALC_FACTS) == (pytest.approx(recall), strict)


VERDICT_FACTS = lawdata.dump_facts([
    {"tipo": "veredicto", "valor": "si", "rol": "respuesta"},
    {"tipo": "concepto", "formas": ["primera clase"], "rol": "respuesta"},
    {"tipo": "cantidad", "valor": 96, "unidad": "hora", "rol": "fundamento"}])


@pytest.mark.parametrize(("answer", "recall"), [
    ("Sí, es una infracción de primera clase: el plazo es de 96 horas.", 1.0),
    ("Sí, hay infracción.", 0.5),
    ("No. Solo sería infracción de primera clase pasadas 96 horas.", 0.0),
], ids=["right", "verdict-only", "opposite-verdict"])
def test_the_opposite_verdict_makes_the_whole_answer_wrong(answer, recall):
    assert utils.fact_scores(answer, VERDICT_FACTS)[0] == pytest.approx(recall)


@pytest.mark.parametrize(("digits", "words", "unit"), [
    ("15 días", "quince días", "dia"),
    ("21 días", "veintiún días", "dia"),
    ("21 días", "veinte y un días", "dia"),
    ("16 años", "dieciséis años", "ano"),
    ("250 dólares", "doscientos cincuenta dólares", "usd"),
    ("USD 1.000", "mil dólares", "usd"),
    ("12,5%", "doce coma cinco por ciento", "por_ciento"),
])
def test_numbers_in_words_match_digits(digits, words, unit):
    value = lawfacts.analyse(digits).numbers[0].value
    fact = [{"tipo": "cantidad", "valor": str(value), "unidad": unit}]
    assert utils.key_fact_recall(f"El plazo es de {words}.", fact) == 1.0
    assert utils.key_fact_recall(f"El plazo es de {digits}.", fact) == 1.0
    assert utils.key_fact_recall("El plazo es de 17 días.", fact) == 0.0


def test_process_results_gives_every_metric_of_the_yaml():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load((TASK_DIR / "_qa_template_yaml").read_text(encoding="utf-8"), Loader=Loader)
    assert set(utils.process_results(DOC, ["x"])) == {m["metric"] for m in config["metric_list"]}


# --------------------------------------------------------------------------------- bad data ---

VALID = {
    "id": "bad-001", "ley": "codigo_trabajo", "version": lawdata.laws()["codigo_trabajo"]["version"],
    "articulos": ["15"], "tipo": "basica", "tema": "Período de prueba",
    "pregunta": "¿Hasta cuándo puede extenderse la etapa de prueba de un primer contrato indefinido?",
    "respuesta": "Hasta noventa días, según el artículo 15 del Código del Trabajo.",
    "hechos_clave": [{"tipo": "cantidad", "valor": 90, "unidad": "dia"}],
    "opciones": ["Noventa días", "Seis meses", "Treinta días", "Un año"], "correcta": 0, "conocimiento": "nuevo",
}


def line(**changes) -> bytes:
    row = {**VALID, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del row[key]
    return json.dumps(row, ensure_ascii=False).encode("utf-8")


def write_split(data_dir: Path, split: str, lines: list[bytes], name: str = "rows.jsonl") -> Path:
    path = data_dir / split / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(("split", "lines", "bad_line", "expected"), [
    ("test", [line(), b"", line(id="bad-002", hechos_clave=None)], 3, "missing field 'hechos_clave'"),
    ("train", [line(opciones=None, tipo=None)], None, None),   # a valid training row: train needs fewer fields
    ("train", [json.dumps({"id": "t1", "ley": "codigo_trabajo", "version": VALID["version"], "articulos": ["15"],
                           "pregunta": "¿Qué plazo?"}).encode()], 1, "missing field 'respuesta'"),
    ("test", [line(), line(id="bad-002", correcta=4)], 2, "field 'correcta' is 4, it must be 0, 1, 2 or 3"),
    ("test", [line(correcta=-1)], 1, "field 'correcta' is -1"),
    ("test", [line(correcta=True)], 1, "field 'correcta' must be int, got bool"),
    ("test", [line(), line(id="bad-002"), line()], 3, "duplicate id 'bad-001' (first seen at "),
    ("test", [line(), "{\"id\": \"bad-002\", \"tema\": \"Período\"}".encode("latin-1")], 2, "not UTF-8"),
    ("test", [line(), line()[:-10]], 2, "not valid JSON"),
    ("test", [b"[1, 2]"], 1, "each line must be a JSON object"),
    ("test", [line(version="2099")], 1, "field 'version' must be"),
    ("test", [line(ley="codigo_civil")], 1, "field 'ley' is 'codigo_civil'"),
    ("validation", [line(conocimiento="quizas")], 1, "field 'conocimiento' is 'quizas'"),
    ("test", [line(opciones=["a", "b", "c"])], 1, "field 'opciones' must hold exactly 4"),
    ("test", [line(hechos_clave=[])], 1, "field 'hechos_clave' must hold 1 to 4"),
    ("test", [line(hechos_clave=["noventa días"])], 1, "each key fact must be an object with a 'tipo'"),
    ("test", [line(hechos_clave=[{"tipo": "cifra", "valor": 90}])], 1, "field 'tipo' is 'cifra'"),
    ("test", [line(hechos_clave=[{"tipo": "concepto"}])], 1, "a 'concepto' fact needs 'formas'"),
    ("test", [line(hechos_clave=[{"tipo": "fecha", "valor": "31/12/2024"}])], 1, "must be 'YYYY-MM-DD' or '--MM-DD'"),
    ("test", [line(hechos_clave=[{"tipo": "cantidad", "valor": 900, "unidad": "usd", "calculo": "3000 * 20 / 100"}])],
     1, "gives 600, not 'valor' 900"),
    ("test", [line(hechos_clave=[{"tipo": "cantidad", "valor": 9, "calculo": "__import__('os')"}])], 1,
     "'calculo' may use numbers"),
], ids=["missing-field", "train-row-ok", "train-missing-field", "correcta-4", "correcta-negative", "correcta-bool",
        "duplicate-id", "not-utf8", "invalid-json", "not-an-object", "wrong-version", "unknown-law",
        "bad-conocimiento", "three-options", "no-key-facts", "untyped-fact", "unknown-fact-type", "concept-without-forms",
        "bad-date", "wrong-calculation", "calculation-with-code"])
def test_bad_rows_are_refused_with_file_and_line(split, lines, bad_line, expected, tmp_path):
    path = write_split(tmp_path, split, lines)
    if expected is None:
        assert [r["_where"] for r in lawdata.load_split(split, data_dir=tmp_path)] == [f"{path}:1"]
        return
    with pytest.raises(DataError) as caught:
        lawdata.load_split(split, data_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{bad_line}: "), message
    assert expected in message


def test_duplicate_ids_across_files_name_both(tmp_path):
    first = write_split(tmp_path, "test", [line()], "a.jsonl")
    second = write_split(tmp_path, "test", [line(id="bad-002"), line()], "b.jsonl")
    with pytest.raises(DataError, match=f"^{second}:2: duplicate id 'bad-001' \\(first seen at {first}:1\\)$"):
        lawdata.load_split("test", data_dir=tmp_path)


def test_empty_split_folder_is_refused(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no \\*.jsonl files for split 'test'"):
        lawdata.load_split("test", data_dir=tmp_path)


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, None),
    ({"articulos": ["9999"]}, "article 9999 does not exist in codigo_trabajo"),
    ({"ley": "codigo_tributario", "version": lawdata.laws()["codigo_tributario"]["version"], "articulos": ["15-Z"]},
     "article 15-Z does not exist in codigo_tributario"),
    ({"hechos_clave": [{"tipo": "cantidad", "valor": 180, "unidad": "dia"}]}, "180 is not a number of codigo_trabajo"),
    ({"hechos_clave": [{"tipo": "concepto", "formas": ["Superintendencia de Bancos"]}]}, "no form has all its words"),
    ({"pregunta": "¿Son noventa días el máximo de la prueba?"}, "the question itself states this fact"),
    ({"respuesta": "Según el artículo 15 del Código del Trabajo, no son noventa días sino treinta."},
     "the reference answer contradicts its own key fact"),
    ({"opciones": ["Seis meses", "Hasta 90 días", "Treinta días", "Un año"]}, "wrong option 1"),
    ({"hechos_clave": [{"tipo": "cantidad", "valor": 900, "unidad": "usd", "calculo": "3000 * 30 / 100"}],
      "respuesta": "Según el artículo 15 del Código del Trabajo, son USD 900."}, "operand 3000 is neither"),
    ({"respuesta": "Hasta noventa días, según el Código del Trabajo."}, "field 'respuesta' must cite the article"),
    ({"pregunta": "¿Es cierto que los preceptos de este Código regulan las relaciones entre empleadores y "
                  "trabajadores y se aplican a las diversas modalidades?"}, "field 'pregunta' copies 12+ words"),
], ids=["valid", "missing-article", "missing-article-other-law", "unsupported-number", "unsupported-concept",
        "echo-of-question", "reference-contradicts", "wrong-option-states-facts", "ungrounded-calculation",
        "no-citation", "verbatim-copy"])
def test_grounding_problems_are_listed(changes, expected, tmp_path, corpus):
    path = write_split(tmp_path, "test", [line(**changes)])
    rows = lawdata.load_split("test", data_dir=tmp_path)
    problems = lawdata.grounding_problems(rows, corpus)
    if expected is None:
        assert problems == []
    else:
        assert any(p.startswith(f"{path}:1: ") and expected in p for p in problems), problems


# --------------------------------------------------------------------- stock lm_eval command line ---

def test_task_yamls_load_in_lm_eval(splits):
    """The group resolves through lm-eval to its four subtasks, and visto/nuevo split the test data."""
    from lm_eval.tasks import TaskManager

    loaded = TaskManager(include_path=str(TASKS)).load(["ecuador_law_es"])
    assert loaded["group_map"] == {
        "ecuador_law_es": ["ecuador_law_es_qa", "ecuador_law_es_mc"],
        "ecuador_law_es_qa": ["ecuador_law_es_qa_visto", "ecuador_law_es_qa_nuevo"],
        "ecuador_law_es_mc": ["ecuador_law_es_mc_visto", "ecuador_law_es_mc_nuevo"],
    }
    known = Counter(r["conocimiento"] for r in splits["test"])
    validation = Counter(r["conocimiento"] for r in splits["validation"])
    for name, task in loaded["tasks"].items():
        part = name.rsplit("_", 1)[1]
        assert len(task.test_docs()) == known[part] and len(task.validation_docs()) == validation[part], name
        assert {doc["conocimiento"] for doc in task.test_docs()} == {part}, name


def test_stock_lm_eval_on_prepared_8bit_with_peft_adapter(smollm2_checkpoints, tmp_path):
    """The README's command, run from another working directory, on the 8-bit checkpoint plus a PEFT adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoints["fp32"], dtype=torch.float32)
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                     task_type="CAUSAL_LM")).save_pretrained(adapter)
    del model
    out = tmp_path / "out"
    # The stock console script of this environment (CI runs .venv/bin/python without activating the venv).
    command = [str(Path(sys.executable).with_name("lm_eval")), "--include_path", str(TASKS), "--tasks", "ecuador_law_es_qa_visto,ecuador_law_es_mc_visto",
               "--model", "hf", "--model_args", f"pretrained={smollm2_checkpoints['8bit']},peft={adapter}",
               "--limit", "2", "--output_path", str(out), "--log_samples", "--apply_chat_template",
               "--batch_size", "2", "--gen_kwargs", "max_gen_toks=16"]
    # One intra-op thread: the suite shares two cores with other jobs, and oversubscribed
    # OpenMP threads made this run ten times slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]

    [results_file] = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    qa, mc = results["results"]["ecuador_law_es_qa_visto"], results["results"]["ecuador_law_es_mc_visto"]
    for metric in ("hechos_recall", "cita_correcta", "cita_erronea", "rougeL"):
        assert 0.0 <= qa[f"{metric},none"] <= 1.0, metric
    for metric in ("chrf_pp", "bleu"):
        assert 0.0 <= qa[f"{metric},none"] <= 100.0, metric
    assert qa["chrf_pp,none"] > 0.0, "the model generated nothing"
    for metric in ("acc", "acc_norm"):
        assert mc[f"{metric},none"] in (0.0, 0.5, 1.0), metric
    assert results["n-samples"]["ecuador_law_es_qa_visto"]["effective"] == 2
    assert results["configs"]["ecuador_law_es_qa_visto"]["generation_kwargs"]["max_gen_toks"] == 16
    assert str(adapter) in str(results["config"]["model_args"])

    # The prompt went through the chat template that prepare wrote into the tokenizer (ChatML, Spanish system).
    [samples_file] = out.rglob("samples_ecuador_law_es_qa_visto_*.jsonl")
    samples = [json.loads(x) for x in samples_file.read_text().splitlines()]
    prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.startswith("<|im_start|>system\nEres un asistente que responde siempre en español")
    assert prompt.endswith("<|im_start|>assistant\n") and samples[0]["doc"]["pregunta"] in prompt


@pytest.mark.parametrize("answer", ["3" + "0" * 130 + " días", "1." + "000." * 12 + "000 dólares", "9" * 16])
def test_huge_numbers_in_model_output_do_not_crash_the_scorer(answer):
    """Model output is untrusted: any digit run is read as a number, never an exception."""
    scores = utils.process_results(DOC, [answer + " y quince días"])
    assert 0.0 <= scores["hechos_recall"] <= 1.0
    assert utils.key_fact_recall(answer + " y quince días", [{"tipo": "cantidad", "valor": 15, "unidad": "dia"}]) == 1.0


def test_a_copied_task_folder_reads_its_own_data(tmp_path):
    """The task folder works wherever it is (e.g. beside a wheel install): its utils read the folder's data."""
    import shutil

    copy = tmp_path / "ecuador_law_es"
    shutil.copytree(TASK_DIR, copy, ignore=shutil.ignore_patterns("corpus", "graded", "__pycache__"))
    test_file = copy / "data" / "test" / "codigo_trabajo.jsonl"
    test_file.write_text("".join(test_file.read_text(encoding="utf-8").splitlines(keepends=True)[:3]),
                         encoding="utf-8")
    try:
        copied = load_task_module(copy / "utils.py", "ecuador_law_es_utils_copy")
        rows = copied.load_dataset()["test"]
        assert sum(r["ley"] == "codigo_trabajo" for r in rows) == 3
    finally:
        lawdata.use_task_folder(TASK_DIR)   # back to the repository's folder for the other tests
    assert len(lawdata.load_split("test")) >= 400
