"""instruct_es_gen: scorers, data file, row validation, prompts and lm-eval wiring.

Everything runs offline on CPU.  The lm-eval run uses a randomly initialised
one-layer GPT-2 and a word-level tokenizer built here, with a ChatML chat
template, so the prompts really go through ``HFLM.apply_chat_template``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import sacrebleu

from benchmark import textmetrics as tm
from benchmark.tasks import load_task_module

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
TASK_DIR = TASKS / "instruct_es"
DATA = TASK_DIR / "data" / "gen_test.jsonl"


def _load_gen_utils():
    return load_task_module(TASK_DIR / "gen_utils.py", "instruct_es_gen_utils")


gu = _load_gen_utils()

REF = "La capital del Ecuador es Quito, una ciudad andina ubicada a unos 2800 metros de altura."
ES = "Quito es la capital del Ecuador y está en la Sierra, rodeada de volcanes y montañas."
EN = "Quito is the capital of Ecuador and it lies in the Andes, surrounded by volcanoes."
PT = "Quito é a capital do Equador e fica nos Andes, cercada por vulcões e montanhas."


# --------------------------------------------------------------------------- scorer table


@pytest.mark.parametrize(
    ("prediction", "chrf", "rouge"),
    [
        (REF, 100.0, 1.0),  # perfect answer
        ("", 0.0, 0.0),  # empty answer
        ("   \n", 0.0, 0.0),  # whitespace only counts as empty
    ],
    ids=["perfect", "empty", "blank"],
)
def test_overlap_extremes(prediction, chrf, rouge):
    assert tm.chrfpp(prediction, REF) == pytest.approx(chrf)
    assert tm.corpus_chrfpp([prediction], [REF]) == pytest.approx(chrf)
    assert tm.rouge_l(prediction, REF) == pytest.approx(rouge)


def test_partial_answer_scores_in_between():
    assert 0 < tm.chrfpp(ES, REF) < 100
    assert 0 < tm.rouge_l(ES, REF) < 1
    # unrelated text scores lower than a paraphrase
    assert tm.chrfpp("Me gusta el encebollado con chifles.", REF) < tm.chrfpp(ES, REF)


def test_rouge_tokenizer_keeps_spanish_words():
    # rouge_score's default tokenizer would split "canción" into "canci" + "n"
    assert tm.SpanishTokenizer().tokenize("La canción del niño") == ["la", "cancion", "del", "niño"]
    assert tm.rouge_l("ñandú pato", "ñandú ñoño") == pytest.approx(0.5)
    assert tm.rouge_l("Son 42 dólares", "son cuarenta y dos dólares") == pytest.approx(1.0)


def test_chrfpp_is_corpus_level_and_matches_sacrebleu():
    refs = [REF, "El Cotopaxi es un volcán activo.", "Hola"]
    preds = [ES, "El Cotopaxi es un volcán.", ""]
    expected = sacrebleu.corpus_chrf(preds, [refs], word_order=2).score
    assert tm.corpus_chrfpp(preds, refs) == pytest.approx(expected)
    assert gu.chrfpp_aggregate(list(zip(refs, preds))) == pytest.approx(expected)
    sentence_mean = sum(tm.chrfpp(p, r) for p, r in zip(preds, refs)) / len(refs)
    assert tm.corpus_chrfpp(preds, refs) != pytest.approx(sentence_mean)
    assert gu.bleu_aggregate(list(zip(refs, preds))) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert gu.bleu_aggregate([(REF, REF)] * 3) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("text", "lang", "score"),
    [
        (ES, "es", 1.0),
        (EN, "en", 0.0),
        (PT, "pt", 0.0),
        ("Le Cotopaxi est un volcan actif situé au sud de Quito.", "fr", 0.0),
        ("北京是中国的首都，也是一座历史悠久的城市。", "zh", 0.0),
        ("", "und", 0.0),  # no answer is not a Spanish answer
        ("42", "und", None),  # nothing to identify: left out of the rate
        ("Quito.", "und", None),
    ],
)
def test_language_id(text, lang, score):
    assert tm.detect_language(text)[0] == lang
    assert tm.spanish_score(text) == score


def test_language_id_is_deterministic():
    assert {tm.detect_language(PT) for _ in range(5)} == {tm.detect_language(PT)}


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("42", "42", 1.0),
        ("cuarenta y dos", "42", 1.0),
        ("42.", "42", 1.0),
        ("**42**", "42", 1.0),
        ("Cuarenta y Dos", "42", 1.0),
        ("43", "42", 0.0),
        ("", "42", 0.0),
        ("La respuesta es 42.", "42", 0.0),  # strict: the item asks for the bare answer
        ("10 de Agosto", "10 de agosto", 1.0),
        ("17:30", "17:30", 1.0),
        ("Jueves", "jueves", 1.0),
    ],
)
def test_exact_match(prediction, gold, expected):
    assert tm.exact_match(prediction, gold) == expected


def test_mean_defined_skips_none():
    assert tm.mean_defined([1.0, None, 0.0, None]) == pytest.approx(0.5)
    assert math.isnan(tm.mean_defined([None, None]))


def test_process_results_per_item():
    exact_doc = {"referencia": "75", "respuesta_exacta": "75", "contexto": [], "instruccion": "¿48 + 27?"}
    out = gu.process_results(exact_doc, ["75."])
    assert out["exact_match"] == 1.0 and out["spanish_rate"] is None
    assert out["chrf_pp"] == ("75", "75.") and out["bleu"] == ("75", "75.")

    free_doc = {"referencia": REF, "respuesta_exacta": None, "contexto": [], "instruccion": "¿Capital?"}
    out = gu.process_results(free_doc, [f"<think>the user wants the capital</think>\n{REF}\n"])
    assert out["exact_match"] is None
    assert out["rougeL"] == pytest.approx(1.0) and out["spanish_rate"] == 1.0
    assert out["chrf_pp"] == (REF, REF)
    assert gu.process_results(free_doc, [EN])["spanish_rate"] == 0.0
    assert gu.clean_prediction("<think>sin cerrar") == ""


# --------------------------------------------------------------------------- the data file


@pytest.fixture(scope="module")
def items():
    return gu.load_items(DATA)


def test_counts_per_category(items):
    counts = Counter(it["categoria"] for it in items)
    assert set(counts) == set(gu.CATEGORIES)
    assert len(items) >= 270
    assert min(counts.values()) >= 60
    assert max(counts.values()) <= 1.3 * min(counts.values())  # roughly balanced


def test_schema_of_every_row(items):
    raw = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(raw) == len(items)
    assert [r["id"] for r in raw] == [f"gen-{i:04d}" for i in range(1, len(raw) + 1)]
    for r in raw:
        assert set(r) <= set(gu.FIELDS) and set(gu.REQUIRED) <= set(r)
        assert (r["categoria"] == "contextual") == bool(r["contexto"])
        for turn in r["contexto"]:
            assert turn["role"] in gu.ROLES and turn["content"].strip()
    assert len({r["instruccion"] for r in raw}) == len(raw)  # no repeated instruction


def test_exact_answers_where_expected(items):
    exact = [it for it in items if it["respuesta_exacta"]]
    by_cat = Counter(it["categoria"] for it in exact)
    assert by_cat["basica"] >= 20 and by_cat["contextual"] >= 5
    assert by_cat["compleja"] == by_cat["creativa"] == 0  # their subtasks drop exact_match
    for it in exact:  # the reference itself gets full marks
        assert tm.exact_match(it["referencia"], it["respuesta_exacta"]) == 1.0, it["id"]


def test_contextual_items_have_real_conversations(items):
    ctx = [it for it in items if it["categoria"] == "contextual"]
    assert all(len(it["contexto"]) % 2 == 0 and len(it["contexto"]) >= 2 for it in ctx)
    assert sum(len(it["contexto"]) >= 4 for it in ctx) >= 5


def test_references_are_spanish(items):
    langs = Counter(tm.detect_language(it["referencia"])[0] for it in items)
    assert set(langs) <= {"es", "und"}, langs
    assert langs["es"] >= 0.8 * len(items)


# --------------------------------------------------------------------------- bad rows

GOOD = {"id": "gen-0001", "categoria": "basica", "contexto": [], "instruccion": "Dame un sinónimo de «feliz».", "referencia": "Contento."}
GOOD_CTX = {
    "id": "gen-0002",
    "categoria": "contextual",
    "contexto": [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "Hola, ¿en qué te ayudo?"}],
    "instruccion": "¿Cuál es la capital de Ecuador?",
    "referencia": "Quito.",
}


def _without(row, key):
    return {k: v for k, v in row.items() if k != key}


BAD_ROWS = [
    ("missing referencia", _without(GOOD, "referencia"), "referencia"),
    ("empty referencia", {**GOOD, "referencia": "  "}, "referencia"),
    ("unknown categoria", {**GOOD, "categoria": "trivia"}, "categoria"),
    ("contextual without contexto", {**GOOD_CTX, "contexto": []}, "contexto"),
    ("contexto outside contextual", {**GOOD_CTX, "categoria": "basica"}, "contexto"),
    ("bad role", {**GOOD_CTX, "contexto": [{"role": "system", "content": "x"}, GOOD_CTX["contexto"][1]]}, "contexto[0].role"),
    ("roles not alternating", {**GOOD_CTX, "contexto": [GOOD_CTX["contexto"][0]] * 2}, "contexto[1].role"),
    ("context ends with user", {**GOOD_CTX, "contexto": GOOD_CTX["contexto"][:1]}, "contexto"),
    ("empty turn", {**GOOD_CTX, "contexto": [{"role": "user", "content": ""}, GOOD_CTX["contexto"][1]]}, "contexto[0].content"),
    ("turn with extra key", {**GOOD_CTX, "contexto": [{"role": "user", "content": "x", "name": "Ana"}, GOOD_CTX["contexto"][1]]}, "contexto[0]"),
    ("unknown field", {**GOOD, "referencias": "x"}, "referencias"),
    ("bad id", {**GOOD, "id": "item-1"}, "id"),
    ("exact answer not in reference", {**GOOD, "referencia": "Son 75.", "respuesta_exacta": "76"}, "respuesta_exacta"),
    ("empty exact answer", {**GOOD, "respuesta_exacta": ""}, "respuesta_exacta"),
    ("not an object", ["gen-0003"], "<row>"),
]


@pytest.mark.parametrize(("row", "field"), [(r, f) for _, r, f in BAD_ROWS], ids=[n for n, _, _ in BAD_ROWS])
def test_bad_row_is_refused_with_file_line_and_field(tmp_path, row, field):
    path = tmp_path / "gen_bad.jsonl"
    fine = [{**GOOD, "id": "gen-0101"}, {**GOOD_CTX, "id": "gen-0102"}]
    if isinstance(row, dict) and row.get("id", "").startswith("gen-000"):
        row = {**row, "id": "gen-0103"}
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fine + [row]), encoding="utf-8")
    with pytest.raises(gu.GenDataError) as err:
        gu.load_items(path)
    message = str(err.value)
    assert f"{path}:3:" in message
    assert f"field '{field}'" in message


def test_invalid_json_and_duplicate_id(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(gu.GenDataError, match=re.escape(f"{path}:2: field '<row>': not valid JSON")):
        gu.load_items(path)
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(gu.GenDataError, match=re.escape(f"{path}:3: field 'id': duplicate of line 1")):
        gu.load_items(path)


def test_good_rows_load(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD_CTX) + "\n", encoding="utf-8")
    ds = gu.load_dataset(data_file=str(path), version=1.0)["test"]
    assert ds.num_rows == 2 and ds[1]["contexto"] == GOOD_CTX["contexto"] and ds[0]["respuesta_exacta"] is None
    assert gu.load_dataset(data_file=str(path), categoria="contextual")["test"].num_rows == 1


# --------------------------------------------------------------------------- prompts

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONV = {
    "id": "gen-9999",
    "categoria": "contextual",
    "contexto": [
        {"role": "user", "content": "Voy a organizar una fiesta para mi hija."},
        {"role": "assistant", "content": "¡Qué alegría! ¿Cuántos años cumple?"},
        {"role": "user", "content": "Cumple 7 años."},
        {"role": "assistant", "content": "A esa edad les encantan los juegos."},
    ],
    "instruccion": "Sugiéreme tres juegos.",
    "referencia": "Sillas musicales, baile congelado y búsqueda del tesoro.",
    "respuesta_exacta": None,
}


@pytest.fixture(scope="module")
def tiny_lm():
    """A real HFLM around a random 1-layer GPT-2 and a word-level tokenizer with a ChatML template."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "<|im_start|>", "<|im_end|>", "Quito", "es", "la", "capital", "de"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[UNK]", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tok.chat_template = CHATML
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=1024, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2)
    return HFLM(pretrained=GPT2LMHeadModel(config), tokenizer=tok, device="cpu", batch_size=8, max_length=1024)


def _blocks(prompt: str) -> list[tuple[str, str]]:
    return re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", prompt, flags=re.S)


def test_chat_prompt_keeps_each_turn_in_its_own_block(tiny_lm):
    prompt = gu.build_context(CONV, chat_template=tiny_lm.apply_chat_template)
    expected = [(t["role"], t["content"]) for t in CONV["contexto"]] + [("user", CONV["instruccion"])]
    assert _blocks(prompt) == expected
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "Usuario:" not in prompt  # not flattened into a transcript

    with_system = gu.build_context(CONV, system_instruction="Responde en español.", chat_template=tiny_lm.apply_chat_template)
    assert _blocks(with_system)[0] == ("system", "Responde en español.")
    assert _blocks(with_system)[1:] == expected


def test_plain_prompt_is_a_spanish_transcript():
    assert gu.build_context(CONV) == (
        "Usuario: Voy a organizar una fiesta para mi hija.\n\n"
        "Asistente: ¡Qué alegría! ¿Cuántos años cumple?\n\n"
        "Usuario: Cumple 7 años.\n\n"
        "Asistente: A esa edad les encantan los juegos.\n\n"
        "Usuario: Sugiéreme tres juegos.\n\n"
        "Asistente:"
    )
    single = {**CONV, "categoria": "basica", "contexto": []}
    assert gu.doc_to_text(single) == "Usuario: Sugiéreme tres juegos.\n\nAsistente:"


# --------------------------------------------------------------------------- lm-eval


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS), include_defaults=False)


def test_lm_eval_loads_the_task_from_any_directory(task_manager, items, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data paths must not depend on the working directory
    tasks = task_manager.load(["instruct_es_gen", "instruct_es_gen_categorias"])["tasks"]
    main = tasks["instruct_es_gen"]
    docs = list(main.test_docs())
    assert len(docs) == len(items)
    assert docs[0]["id"] == "gen-0001" and isinstance(docs[0]["contexto"], list)
    assert main.VERSION == 1.0 and main.OUTPUT_TYPE == "generate_until"
    assert main.config.generation_kwargs["do_sample"] is False
    assert set(main.aggregation()) == {"chrf_pp", "bleu", "rougeL", "spanish_rate", "exact_match"}
    per_cat = {c: tasks[f"instruct_es_gen_{c}"] for c in gu.CATEGORIES}
    assert sum(len(t.test_docs()) for t in per_cat.values()) == len(items)
    for cat, task in per_cat.items():
        assert {d["categoria"] for d in task.test_docs()} == {cat}
    assert "exact_match" not in per_cat["creativa"].aggregation()
    with pytest.raises(ValueError, match="zero-shot"):
        main.fewshot_context(docs[0], num_fewshot=2)


def _contextual_ids(items, n):
    return [i for i, it in enumerate(items) if it["categoria"] == "contextual"][:n]


@pytest.mark.parametrize("chat", [True, False], ids=["chat_template", "plain"])
def test_lm_eval_run_end_to_end(tiny_lm, task_manager, items, chat, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate

    monkeypatch.chdir(tmp_path)
    picks = [0, 1, 2] + _contextual_ids(items, 2)
    out = simple_evaluate(
        model=tiny_lm,
        tasks=["instruct_es_gen"],
        task_manager=task_manager,
        samples={"instruct_es_gen": picks},
        apply_chat_template=chat,
        gen_kwargs="max_gen_toks=4",
        log_samples=True,
        bootstrap_iters=0,
    )
    res = out["results"]["instruct_es_gen"]
    for metric in ("chrf_pp", "bleu", "rougeL", "spanish_rate"):
        assert isinstance(res[f"{metric},none"], float)
    assert 0 <= res["chrf_pp,none"] <= 100
    samples = {s["doc"]["id"]: s for s in out["samples"]["instruct_es_gen"]}
    assert len(samples) == len(picks)
    for s in samples.values():
        prompt = s["arguments"][0][0]
        doc = s["doc"]
        if chat:
            assert _blocks(prompt) == [(t["role"], t["content"]) for t in doc["contexto"]] + [("user", doc["instruccion"])]
        else:
            assert prompt == gu.doc_to_text(doc)
