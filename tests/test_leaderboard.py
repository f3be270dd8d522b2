"""leaderboard/build.py: reading results folders, main metrics, paired bootstrap, escaping, errors.

Results folders are written here by hand in the layout of benchmark/results.py
(results_*.json with a "benchmark" key, samples_<task>_*.jsonl, done.json with
checksums), with per-sample logs shaped like lm-eval 0.4's. The browser test
(test_leaderboard_browser.py) reuses ``make_results``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.results import sha256_bytes
from benchmark.textmetrics import corpus_chrfpp
from leaderboard import build as lb

REPO = Path(__file__).resolve().parents[1]
STAMP = "2026-03-02T09-15-00"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'

# ------------------------------------------------------------------ fake results

QA = [  # (question, reference, key facts)
    ("¿Cuántos días de vacaciones pagadas al año tiene un trabajador?",
     "Tiene derecho a quince días de descanso pagado al año, según el artículo 69.", ["quince días", "69"]),
    ("¿Hasta cuándo se paga el décimo tercer sueldo?",
     "Se paga hasta el veinticuatro de diciembre de cada año, según el artículo 111.", ["veinticuatro de diciembre"]),
    ("¿Cuántas horas dura la jornada ordinaria de trabajo?",
     "La jornada máxima es de ocho horas diarias y cuarenta a la semana, según el artículo 47.", ["ocho horas", "47"]),
    ("¿Qué recargo tienen las horas suplementarias?",
     "Se pagan con un recargo del cincuenta por ciento, según el artículo 55.", ["cincuenta por ciento"]),
    ("¿Quién debe afiliar al trabajador al IESS?",
     "El empleador debe afiliarlo desde el primer día de labores.", ["empleador", "primer día"]),
    ("¿Cuánto dura la licencia por paternidad?",
     "El padre tiene diez días de licencia con remuneración completa.", ["diez días"]),
]
ANSWERS = {  # what each fake model answers to QA[i]; the adapter answers better
    "base": ["Creo que son unos días al año.", "En diciembre.", "Ocho horas.", "Se pagan más.",
             "El trabajador mismo.", "Unos días."],
    "law": ["Quince días de descanso pagado, artículo 69 del Código del Trabajo.",
            "Hasta el veinticuatro de diciembre, artículo 111.", "Ocho horas diarias, artículo 47.",
            "Con un recargo del cincuenta por ciento.", "El empleador, desde el primer día.",
            "Diez días de licencia pagada."],
}
MC = [("¿Qué entidad administra la seguridad social en el Ecuador?", [" el IESS", " el SRI", " la ANT", " el CNE"], 0),
      ("¿En qué mes se paga el décimo cuarto sueldo en la Sierra?", [" enero", " agosto", " abril", " junio"], 1),
      ("¿Cuál es la moneda de curso legal en el Ecuador?", [" el sucre", " el euro", " el dólar", " el peso"], 2),
      ("¿Qué código regula las relaciones laborales?", [" el Tributario", " el Civil", " el Penal", " el del Trabajo"], 3)]
INSTRUCT = [("Escribe un sinónimo de «chévere».", "Bacán."),
            ("Resume en una frase qué es el Día de los Difuntos en Ecuador.",
             "Es el 2 de noviembre, cuando las familias recuerdan a sus muertos con colada morada y guaguas de pan."),
            ("¿Cuánto es 12 por 3?", "Treinta y seis.")]


def qa_samples(answers, chat=lambda q: f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"):
    out = []
    for i, ((question, ref, facts), answer) in enumerate(zip(QA, answers)):
        hits = sum(f.lower() in answer.lower() for f in facts) / len(facts)
        out.append({"doc_id": i, "doc": {"pregunta": question, "respuesta": ref}, "target": ref,
                    "arguments": [[chat(question), {"until": ["\n\n"], "max_gen_toks": 128}]],
                    "resps": [[answer]], "filtered_resps": [answer], "filter": "none",
                    "metrics": ["hechos_recall", "chrf_pp"], "hechos_recall": hits, "chrf_pp": [ref, answer]})
    return out


def mc_samples(picks):
    out = []
    for i, ((question, options, gold), pick) in enumerate(zip(MC, picks)):
        context = f"Pregunta sobre la legislación del Ecuador: {question}\nRespuesta:"
        lls = [[-1.0 if j == pick else -4.0 - j, j == pick] for j in range(len(options))]
        out.append({"doc_id": i, "doc": {"pregunta": question}, "target": gold,
                    "arguments": [[context, o] for o in options], "resps": [[ll] for ll in lls],
                    "filtered_resps": lls, "filter": "none", "metrics": ["acc"], "acc": float(pick == gold)})
    return out


def instruct_samples(outputs):
    """Logged with lm-eval's other ``arguments`` shape: {"gen_args_0": {"arg_0": prompt, "arg_1": kwargs}}."""
    return [{"doc_id": i, "doc": {"instruccion": q, "referencia": ref}, "target": ref,
             "arguments": {"gen_args_0": {"arg_0": f"Instrucción: {q}\nRespuesta:", "arg_1": {"until": ["\n\n"]}}},
             "resps": [[o]], "filtered_resps": [o], "filter": "none", "metrics": ["chrf_pp", "spanish_rate"],
             "chrf_pp": [ref, o], "spanish_rate": None if len(o) < 8 else 1.0}
            for i, ((q, ref), o) in enumerate(zip(INSTRUCT, outputs))]


def aggregate(samples):
    """lm-eval-style task metrics from per-sample values: means with stderr, corpus chrF++."""
    metrics = {}
    for name in samples[0]["metrics"]:
        values = [s[name] for s in samples if s[name] is not None]
        if isinstance(values[0], list) and name != "chrf_pp":
            continue  # e.g. ifeval's per-instruction lists
        if isinstance(values[0], list):
            metrics[f"{name},none"] = corpus_chrfpp([p for _, p in values], [r for r, _ in values])
            metrics[f"{name}_stderr,none"] = "N/A"
        else:
            arr = np.array(values, dtype=float)
            metrics[f"{name},none"] = float(arr.mean())
            metrics[f"{name}_stderr,none"] = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else "N/A"
    return metrics


def write_combo(root: Path, model: str, adapter: str, tasks: dict, groups: dict | None = None,
                bench: dict | None = None) -> Path:
    """One finished combination folder: results, samples and done.json, as run_all writes them."""
    folder = root / model / adapter
    folder.mkdir(parents=True)
    results = {task: {"alias": task, **aggregate(s)} for task, s in tasks.items()}
    for group, subtasks in (groups or {}).items():
        sizes = [len(tasks[t]) for t in subtasks]
        for metric in ("hechos_recall", "acc"):
            parts = [(n, results[t][f"{metric},none"]) for n, t in zip(sizes, subtasks) if f"{metric},none" in results[t]]
            if parts:
                results[group] = {**results.get(group, {"alias": group}),
                                  f"{metric},none": sum(n * v for n, v in parts) / sum(n for n, _ in parts),
                                  f"{metric}_stderr,none": "N/A"}
    benchmark = {"schema": 1, "model": model, "display_name": f"{model} (fake)", "adapter": adapter,
                 "precision": "8bit", "template": "templates/ChatML-es.yaml", "template_hash": "ab12" * 16,
                 "preset": "Deterministic", "preset_hash": "cd34" * 16, "adapter_hash": None if adapter == "base"
                 else "ef56" * 16, "device": "cpu", "seed": 1234, "sample": "fixed stratified sample, 8 per task",
                 "samples": {t: [s["doc_id"] for s in v] for t, v in tasks.items()},
                 "libraries": {"lm_eval": "0.4.13", "transformers": "5.0.0"}, "seconds": 12.5,
                 "input_hash": "99" * 32, **(bench or {})}
    data = {"results": results, "groups": {g: results[g] for g in groups or {}}, "group_subtasks": dict(groups or {}),
            "configs": {t: {"task": t} for t in tasks}, "versions": {t: 1.0 for t in tasks},
            "n-samples": {t: {"original": 100, "effective": len(s)} for t, s in tasks.items()},
            "benchmark": benchmark}
    files = []
    for task, samples in tasks.items():
        path = folder / f"samples_{task}_{STAMP}.jsonl"
        path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
        files.append(path)
    path = folder / f"results_{STAMP}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    files.append(path)
    (folder / "done.json").write_text(json.dumps({"schema": 1, "input_hash": "99" * 32, "files": {
        f.name: sha256_bytes(f.read_bytes()) for f in files}}))
    return folder


LAW_GROUP = {"ecuador_law_es": ["ecuador_law_es_qa_visto", "ecuador_law_es_mc_visto"]}


def make_results(root: Path, xss: bool = False) -> Path:
    """Two models; smollm has base + law adapter (+ a failed one), gemma only base. xss=True plants payloads."""
    law_answers = list(ANSWERS["law"])
    adapter = "law"
    extra = {}
    if xss:
        law_answers[0] = f"Quince días. {XSS_SCRIPT} {XSS_IMG}"
        adapter = f"law{XSS_IMG}"
        extra = {XSS_IMG: mc_samples([0, 1, 2, 0])}
    write_combo(root, "smollm2-135m-instruct", "base",
                {"ecuador_law_es_qa_visto": qa_samples(ANSWERS["base"]), "ecuador_law_es_mc_visto": mc_samples([0, 0, 2, 0]),
                 "instruct_es_gen": instruct_samples(["Chévere.", "Es un feriado.", "36"]), **extra}, LAW_GROUP)
    write_combo(root, "smollm2-135m-instruct", adapter,
                {"ecuador_law_es_qa_visto": qa_samples(law_answers), "ecuador_law_es_mc_visto": mc_samples([0, 1, 2, 0]),
                 "instruct_es_gen": instruct_samples(["Bacán.", "Es el 2 de noviembre, con colada morada y guaguas.",
                                                      "Treinta y seis."]), **extra}, LAW_GROUP)
    write_combo(root, "gemma-3-270m", "base",
                {"ecuador_law_es_qa_visto": qa_samples(ANSWERS["base"][::-1]), "ecuador_law_es_mc_visto": mc_samples([0, 1, 0, 0]),
                 "instruct_es_gen": instruct_samples(["Pana.", "Un día festivo.", "Treinta y seis."])}, LAW_GROUP,
                bench={"precision": "bf16", "preset": "Contrastive Search", "sample": "full test split"})
    failed = root / "smollm2-135m-instruct" / "merged"
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"input_hash": "1", "error": f"CUDA out of memory {XSS_SCRIPT}"}))
    (root / "gemma-3-270m" / "instruct").mkdir()  # not run yet: no row
    return root


def page_json(page: str) -> dict:
    """The page's data, with prompts and references resolved from ``texts`` as the page's script does."""
    blob = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    for views in data["samples"].values():
        for listed in views.values():
            for view in listed:
                view["prompt"], view["target"] = data["texts"][view["prompt"]], data["texts"][view["target"]]
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = make_results(tmp_path_factory.mktemp("results") / "results")
    out = lb.build(root, root.parent / "site" / "index.html")
    page = out.read_text(encoding="utf-8")
    return root, page, page_json(page)


def _row(data, model, adapter):
    return next(r for r in data["rows"] if r["model"] == model and r["adapter"] == adapter)


# ------------------------------------------------------------------ the page


def test_page_is_self_contained(built):
    _, page, data = built
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<svg" in page and page.count('<figure class="chart">') == len(data["tasks"])


def test_rows_columns_and_main_metrics(built):
    _, _, data = built
    rows = [(r["model"], r["adapter"], r["status"]) for r in data["rows"]]
    assert rows == [("gemma-3-270m", "base", "ok"), ("smollm2-135m-instruct", "base", "ok"),
                    ("smollm2-135m-instruct", "law", "ok"), ("smollm2-135m-instruct", "merged", "failed")]
    metrics = {t["name"]: t["metric"] for t in data["tasks"]}
    assert metrics == {"ecuador_law_es": "hechos_recall", "ecuador_law_es_mc_visto": "acc",
                       "ecuador_law_es_qa_visto": "hechos_recall", "instruct_es_gen": "chrf_pp"}
    assert [t["name"] for t in data["tasks"] if t["group"]] == ["ecuador_law_es"]
    gemma = _row(data, "gemma-3-270m", "base")
    assert (gemma["precision"], gemma["preset"], gemma["sample"]) == ("bf16", "Contrastive Search", "full test split")
    assert _row(data, "smollm2-135m-instruct", "base")["sample"] == "fixed stratified sample, 8 per task"


def test_values_and_standard_errors_come_from_results(built):
    root, _, data = built
    results = json.loads(next((root / "smollm2-135m-instruct" / "law").glob("results_*.json")).read_text())["results"]
    cells = _row(data, "smollm2-135m-instruct", "law")["cells"]
    mc = results["ecuador_law_es_mc_visto"]
    assert cells["ecuador_law_es_mc_visto"]["value"] == pytest.approx(mc["acc,none"])
    assert cells["ecuador_law_es_mc_visto"]["stderr"] == pytest.approx(mc["acc_stderr,none"])
    assert cells["instruct_es_gen"]["stderr"] is None  # "N/A" in the results file
    assert cells["ecuador_law_es_mc_visto"]["n"] == 4


def test_adapter_rows_have_delta_against_base(built):
    _, _, data = built
    base = _row(data, "smollm2-135m-instruct", "base")["cells"]
    law = _row(data, "smollm2-135m-instruct", "law")["cells"]
    assert all(c["delta"] is None for c in base.values())
    assert all(c["delta"] is None for c in _row(data, "gemma-3-270m", "base")["cells"].values())
    for task in ("ecuador_law_es", "ecuador_law_es_qa_visto", "ecuador_law_es_mc_visto", "instruct_es_gen"):
        d = law[task]["delta"]
        assert d["delta"] == pytest.approx(law[task]["value"] - base[task]["value"]), task
        assert d["lo"] <= d["delta"] <= d["hi"], task
    assert law["ecuador_law_es_qa_visto"]["delta"]["lo"] > 0  # the law adapter answers every question better
    assert law["ecuador_law_es_mc_visto"]["delta"]["n"] == 4


def test_failed_row_keeps_error_text(built):
    _, _, data = built
    assert _row(data, "smollm2-135m-instruct", "merged")["error"] == f"CUDA out of memory {XSS_SCRIPT}"


def test_sample_views_both_argument_shapes(built):
    _, _, data = built
    law_id = str(_row(data, "smollm2-135m-instruct", "law")["id"])
    qa = data["samples"][law_id]["ecuador_law_es_qa_visto"][0]
    assert qa["prompt"].startswith("<|im_start|>user\n¿Cuántos días") and qa["output"] == ANSWERS["law"][0]
    assert qa["target"] == QA[0][1] and qa["scores"]["hechos_recall"] == 1.0
    assert 0 < qa["scores"]["chrf_pp (sentence)"] <= 100
    gen = data["samples"][law_id]["instruct_es_gen"][0]
    assert gen["prompt"] == "Instrucción: Escribe un sinónimo de «chévere».\nRespuesta:" and gen["output"] == "Bacán."
    assert gen["scores"]["spanish_rate"] is None
    mc = data["samples"][law_id]["ecuador_law_es_mc_visto"][1]
    assert mc["target"] == "[1] agosto" and mc["output"].splitlines()[1].startswith("→ [1] agosto")


def test_python_parts_escape_everything(tmp_path):
    root = make_results(tmp_path / "results", xss=True)
    page = lb.build(root, tmp_path / "index.html").read_text(encoding="utf-8")
    for payload in (XSS_SCRIPT, XSS_IMG, "<img", "</script><"):
        assert payload not in page
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in page  # the task name in a chart caption
    data = page_json(page)
    law = _row(data, "smollm2-135m-instruct", f"law{XSS_IMG}")
    assert XSS_SCRIPT in data["samples"][str(law["id"])]["ecuador_law_es_qa_visto"][0]["output"]
    assert XSS_IMG in {t["name"] for t in data["tasks"]}


def test_script_json_cannot_close_its_block():
    text = lb._script_json({"a": "</script><!-- & \u2028", "nan": float("nan")})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028", "nan": None}


# ------------------------------------------------------------------ bootstrap


def _combo(samples_by_task):
    return {"data": {"results": {}}, "samples": samples_by_task}


def test_paired_bootstrap_of_a_mean_is_scipys_bootstrap_of_the_differences():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(7)
    a, b = rng.random(30).round(2), rng.random(30).round(2)
    base = _combo({"t": [{"doc_id": i, "acc": float(v)} for i, v in enumerate(b)]})
    other = _combo({"t": [{"doc_id": i, "acc": float(v)} for i, v in enumerate(a)][::-1]  # order does not matter
                    + [{"doc_id": 99, "acc": 1.0}]})  # a document the base did not score is left out
    got = lb.paired_delta(base, other, "t", "acc", resamples=500, seed=3)
    order = sorted(range(30), key=lambda i: json.dumps(i))
    d = (a - b)[order]
    want = bootstrap((d,), np.mean, n_resamples=500, method="percentile", random_state=np.random.default_rng(3))
    assert got["n"] == 30 and got["delta"] == pytest.approx(d.mean())
    assert [got["lo"], got["hi"]] == pytest.approx(list(want.confidence_interval))
    assert got["se"] == pytest.approx(want.standard_error)
    assert got["mde"] == pytest.approx(2.8016 * want.standard_error, rel=1e-4)
    assert lb.paired_delta(base, other, "t", "acc", resamples=500, seed=3) == got  # fixed seed: reproducible


def test_chrf_bootstrap_recomputes_corpus_chrfpp():
    from scipy.stats import bootstrap

    refs = [r for _, r, _ in QA]
    base = _combo({"t": [{"doc_id": i, "chrf_pp": [r, o]} for i, (r, o) in enumerate(zip(refs, ANSWERS["base"]))]})
    law = _combo({"t": [{"doc_id": i, "chrf_pp": [r, o]} for i, (r, o) in enumerate(zip(refs, ANSWERS["law"]))]})
    got = lb.paired_delta(base, law, "t", "chrf_pp", resamples=60, seed=11)

    def corpus_difference(idx):   # the slow way: sacrebleu's corpus chrF++ on the resampled lists
        idx = [int(i) for i in idx]
        pick = [refs[i] for i in idx]
        return (corpus_chrfpp([ANSWERS["law"][i] for i in idx], pick)
                - corpus_chrfpp([ANSWERS["base"][i] for i in idx], pick))

    want = bootstrap((np.arange(len(refs)),), corpus_difference, vectorized=False, n_resamples=60,
                     method="percentile", random_state=np.random.default_rng(11))
    assert got["delta"] == pytest.approx(corpus_chrfpp(ANSWERS["law"], refs) - corpus_chrfpp(ANSWERS["base"], refs))
    assert [got["lo"], got["hi"]] == pytest.approx(list(want.confidence_interval))
    assert got["lo"] > 0


def test_identical_runs_have_zero_delta_and_no_overlap_gives_none():
    base = _combo({"t": [{"doc_id": i, "acc": float(i % 2)} for i in range(10)]})
    same = lb.paired_delta(base, base, "t", "acc", resamples=100)
    assert (same["delta"], same["lo"], same["hi"]) == (0, 0, 0)
    other = _combo({"t": [{"doc_id": i + 100, "acc": 1.0} for i in range(10)]})
    assert lb.paired_delta(base, other, "t", "acc") is None


def test_group_delta_weights_subtasks_by_size():
    base = _combo({"a": [{"doc_id": i, "acc": 0.0} for i in range(3)], "b": [{"doc_id": i, "acc": 0.0} for i in range(1)]})
    other = {"data": {"results": {}, "group_subtasks": {"g": ["a", "b"]}},
             "samples": {"a": [{"doc_id": i, "acc": 1.0} for i in range(3)], "b": [{"doc_id": 0, "acc": 0.0}]}}
    got = lb.paired_delta(base, other, "g", "acc", resamples=50)
    assert got["delta"] == pytest.approx(0.75) and got["lo"] == got["hi"] == pytest.approx(0.75) and got["n"] == 4


# ------------------------------------------------------------------ robustness


def test_new_task_becomes_a_new_column(tmp_path):
    root = tmp_path / "results"
    write_combo(root, "m", "base", {"tarea_nueva_2027": mc_samples([0, 1, 0, 3])})
    write_combo(root, "m", "otro", {"tarea_nueva_2027": mc_samples([0, 1, 2, 3]),
                                    "ifeval_es": [{"doc_id": 0, "metrics": ["prompt_level_strict_acc", "inst_level_strict_acc"],
                                                   "prompt_level_strict_acc": True, "arguments": [["Hola", {}]],
                                                   "inst_level_strict_acc": [True, False],
                                                   "filtered_resps": ["hola"], "target": ""}]})
    data = page_json(lb.build(root, tmp_path / "i.html").read_text(encoding="utf-8"))
    assert {t["name"]: t["metric"] for t in data["tasks"]} == {"tarea_nueva_2027": "acc",
                                                               "ifeval_es": "prompt_level_strict_acc"}
    otro = _row(data, "m", "otro")
    assert data["samples"][str(otro["id"])]["ifeval_es"][0]["scores"] == {"prompt_level_strict_acc": True,
                                                                            "inst_level_strict_acc": [True, False]}
    cell = otro["cells"]["tarea_nueva_2027"]
    assert cell["value"] == 1.0 and cell["delta"]["delta"] == pytest.approx(0.25)


@pytest.mark.parametrize("field", ["results", "benchmark", "benchmark.preset", "benchmark.sample"])
def test_missing_required_field_is_refused_naming_the_file(tmp_path, field):
    folder = write_combo(tmp_path / "r", "m", "base", {"t": mc_samples([0, 1, 2, 3])})
    path = next(folder.glob("results_*.json"))
    data = json.loads(path.read_text())
    node, _, key = field.rpartition(".")
    del (data[node] if node else data)[key]
    path.write_text(json.dumps(data))
    (folder / "done.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(lb.LeaderboardError, match=re.escape(f"{path}: missing required field '{field}'")):
        lb.build(tmp_path / "r", tmp_path / "i.html")


def test_bad_samples_line_is_refused_naming_file_and_line(tmp_path):
    folder = write_combo(tmp_path / "r", "m", "base", {"t": mc_samples([0, 1, 2, 3])})
    path = next(folder.glob("samples_t_*.jsonl"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [json.dumps({"acc": 1.0})] + lines[3:]) + "\n")
    (folder / "done.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(lb.LeaderboardError, match=re.escape(f"{path}, line 3: missing required field 'doc_id'")):
        lb.build(tmp_path / "r", tmp_path / "i.html")
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(lb.LeaderboardError, match=re.escape(f"{path}, line 2: not valid JSON")):
        lb.build(tmp_path / "r", tmp_path / "i.html")


def test_edited_results_file_is_refused(tmp_path):
    folder = write_combo(tmp_path / "r", "m", "base", {"t": mc_samples([0, 1, 2, 3])})
    path = next(folder.glob("results_*.json"))
    path.write_text(path.read_text().replace('"acc,none": 1.0', '"acc,none": 0.9'))
    with pytest.raises(lb.LeaderboardError, match=re.escape(f"{path}: missing or changed since the run")):
        lb.build(tmp_path / "r", tmp_path / "i.html")


def test_missing_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(lb.LeaderboardError, match="does not exist"):
        lb.build(tmp_path / "nothing", tmp_path / "i.html")


def test_command_line_from_another_directory(tmp_path):
    make_results(tmp_path / "results")
    proc = subprocess.run([sys.executable, "-m", "leaderboard.build", "--results", "results", "--out", "out/lb.html",
                           "--resamples", "200"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = page_json((tmp_path / "out" / "lb.html").read_text(encoding="utf-8"))
    assert data["resamples"] == 200 and len(data["rows"]) == 4
    bad = tmp_path / "results" / "m" / "base"
    bad.mkdir(parents=True)
    (bad / "done.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "leaderboard.build", "--results", "results", "--out", "x.html"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "done.json but no results_*.json" in proc.stderr


def test_the_page_carries_no_path_of_the_machine_that_ran():
    home = str(Path.home())
    bench = {"checkpoint": f"{lb.REPO}/.cache/models/x/int8", "adapter_location": f"{home}/adapters/law",
             "nested": [{"folder": f"{lb.REPO}/results/x/base"}], "seconds": 1.5}
    assert lb.portable(bench) == {"checkpoint": ".cache/models/x/int8", "adapter_location": "~/adapters/law",
                                  "nested": [{"folder": "results/x/base"}], "seconds": 1.5}



# ------------------------------------------------------------------ published results, reproduction ---

FULL = {"sample": "full test split", "samples": None}


def _law_tasks(answers, picks, outputs):
    return {"ecuador_law_es_qa_visto": qa_samples(answers), "ecuador_law_es_mc_visto": mc_samples(picks),
            "instruct_es_gen": instruct_samples(outputs)}


LAW_OUT = ["Bacán.", "Es el 2 de noviembre, con colada morada y guaguas.", "Treinta y seis."]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two whole-split combinations (base, law) of one model, run and then published."""
    from benchmark.published import publish

    root = tmp_path_factory.mktemp("full") / "results"
    write_combo(root, "smollm2-135m-instruct", "base",
                _law_tasks(ANSWERS["base"], [0, 0, 2, 0], ["Chévere.", "Es un feriado.", "36"]), LAW_GROUP, bench=FULL)
    write_combo(root, "smollm2-135m-instruct", "law", _law_tasks(ANSWERS["law"], [0, 1, 2, 0], LAW_OUT), LAW_GROUP,
                bench=FULL)
    store = root.parent / "published"
    for adapter in ("base", "law"):
        publish(root / "smollm2-135m-instruct" / adapter, store)
    return root, store


def test_published_results_round_trip_and_store_prompts_and_documents_once(store):
    from benchmark.published import load_published, publish

    root, folder = store
    combos = {c["adapter"]: c for c in load_published(folder)}
    original = {c["adapter"]: c for c in lb.load_combos(root)}
    assert set(combos) == {"base", "law"} and all(c["published"] for c in combos.values())
    for adapter, combo in combos.items():
        assert combo["data"]["results"] == original[adapter]["data"]["results"]
        for task, samples in original[adapter]["samples"].items():
            got = {s["doc_id"]: s for s in combo["samples"][task]}
            for s in samples:
                for field in ("doc", "arguments", "filtered_resps", "target", "metrics", *s["metrics"]):
                    assert got[s["doc_id"]][field] == s[field], (task, field)
    import gzip
    prompts = gzip.decompress((folder / "smollm2-135m-instruct" / "prompts.jsonl.gz").read_bytes()).decode()
    docs = gzip.decompress((folder / "docs.jsonl.gz").read_bytes()).decode()
    assert prompts.count("¿Cuántos días") == 1 and docs.count("¿Cuántos días") == 1   # shared by base and law
    before = (folder / "smollm2-135m-instruct" / "law" / "samples.jsonl.gz").read_bytes()
    publish(root / "smollm2-135m-instruct" / "law", folder)
    assert (folder / "smollm2-135m-instruct" / "law" / "samples.jsonl.gz").read_bytes() == before   # same bytes


def test_only_whole_splits_are_published_and_an_edited_file_is_refused(store, tmp_path):
    from benchmark.published import load_published, publish

    root = tmp_path / "results"
    write_combo(root, "m", "base", {"t": mc_samples([0, 1, 2, 3])})
    with pytest.raises(lb.LeaderboardError, match="only whole test splits are published"):
        publish(root / "m" / "base", tmp_path / "store")
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(store[1], copy)
    (copy / "smollm2-135m-instruct" / "law" / "results.json").write_text("{}")
    with pytest.raises(lb.LeaderboardError, match="changed since the run"):
        load_published(copy)


def test_a_sample_run_is_compared_document_by_document_with_the_published_rows(store, tmp_path):
    _, folder = store
    mine = tmp_path / "results"
    answers = list(ANSWERS["law"])
    answers[1] = "Otra respuesta."   # one answer no longer reproduces
    sample = {"sample": "fixed stratified sample, 2 per task", "samples": {"ecuador_law_es_qa_visto": [0, 1]},
              "max_gen_toks": 128}
    write_combo(mine, "smollm2-135m-instruct", "law",
                {"ecuador_law_es_qa_visto": qa_samples(answers)[:2]}, bench=sample)
    page = lb.build(mine, tmp_path / "i.html", published=folder)
    data = page_json(page.read_text(encoding="utf-8"))
    law = _row(data, "smollm2-135m-instruct", "law")
    assert law["origin"] == "published" and law["sample"] == "full test split"   # the published row stays
    (r,) = data["reproduction"]
    assert (r["documents"], r["documents_reproduced"]) == (2, 1)
    assert r["scores"] == 4 and r["scores_reproduced"] == 2   # hechos_recall and chrF++ of document 1 changed
    (d,) = r["differ"]
    assert d["doc_id"] == 1 and d["answer_changed"] and set(d["scores"]) == {"hechos_recall", "chrf_pp"}
    assert r["settings_differ"] == {"max_gen_toks": [None, 128]}
    lines = lb.reproduction_lines(lb.build.last)
    assert lines[0].startswith("smollm2-135m-instruct/law: 2 of 4 per-document scores and 1 of 2 documents")
    assert "ecuador_law_es_qa_visto doc 1" in lines[1]


def test_a_whole_split_run_replaces_the_published_row(store, tmp_path):
    _, folder = store
    mine = tmp_path / "results"
    write_combo(mine, "smollm2-135m-instruct", "base",
                _law_tasks(ANSWERS["law"], [0, 1, 2, 0], LAW_OUT), LAW_GROUP, bench=FULL)
    data = page_json(lb.build(mine, tmp_path / "i.html", published=folder).read_text(encoding="utf-8"))
    base, law = _row(data, "smollm2-135m-instruct", "base"), _row(data, "smollm2-135m-instruct", "law")
    assert (base["origin"], law["origin"]) == ("recomputed", "published")
    assert law["cells"]["ecuador_law_es_qa_visto"]["delta"]["delta"] == 0   # the new base answers as law does
    assert data["reproduction"] == []


def test_every_metric_with_its_direction_and_the_minimum_detectable_effect(store, tmp_path):
    _, folder = store
    data = page_json(lb.build(None, tmp_path / "i.html", published=folder).read_text(encoding="utf-8"))
    qa = next(t for t in data["tasks"] if t["name"] == "ecuador_law_es_qa_visto")
    assert [m["name"] for m in qa["metrics"]] == ["hechos_recall", "chrf_pp"]
    law = _row(data, "smollm2-135m-instruct", "law")["cells"]["ecuador_law_es_qa_visto"]
    assert law["metrics"]["chrf_pp"]["delta"]["delta"] == pytest.approx(
        law["metrics"]["chrf_pp"]["value"] - _row(data, "smollm2-135m-instruct", "base")["cells"][
            "ecuador_law_es_qa_visto"]["metrics"]["chrf_pp"]["value"])
    assert qa["mde"] == pytest.approx(law["delta"]["mde"]) and qa["mde"] > 0


def test_breakdowns_by_document_fields_named_in_the_task_metadata(tmp_path):
    root = tmp_path / "results"
    samples = qa_samples(ANSWERS["law"])
    for s, ley in zip(samples, ["trabajo", "trabajo", "tributario"]):
        s["doc"]["ley"] = ley
    ifeval = [{"doc_id": i, "doc": {"instruction_id_list": ids}, "target": "", "arguments": [["x", {}]],
               "filtered_resps": ["y"], "metrics": ["prompt_level_strict_acc", "inst_level_strict_acc"],
               "prompt_level_strict_acc": all(ok), "inst_level_strict_acc": ok}
              for i, (ids, ok) in enumerate([(["es:a", "es:b"], [True, False]), (["es:a"], [True])])]
    folder = write_combo(root, "m", "base", {"qa": samples, "ifeval": ifeval})
    results = next(folder.glob("results_*.json"))
    data = json.loads(results.read_text())
    data["configs"] = {"qa": {"metadata": {"breakdown": ["ley"]}},
                       "ifeval": {"metadata": {"breakdown": ["instruction_id_list"]}}}
    results.write_text(json.dumps(data))
    (folder / "done.json").write_text(json.dumps({"files": {}}))
    page = page_json(lb.build(root, tmp_path / "i.html").read_text(encoding="utf-8"))
    (row,) = page["rows"]
    qa = page["breakdowns"]["qa"][str(row["id"])]["ley"]
    assert qa["metric"] == "hechos_recall"
    want = {"trabajo": [(samples[0]["hechos_recall"] + samples[1]["hechos_recall"]) / 2, 2],
            "tributario": [samples[2]["hechos_recall"], 1]}
    assert {k: [pytest.approx(v[0]), v[1]] for k, v in want.items()} == qa["values"]
    inst = page["breakdowns"]["ifeval"][str(row["id"])]["instruction_id_list"]
    assert inst == {"metric": "inst_level_strict_acc", "values": {"es:a": [1.0, 2], "es:b": [0.0, 1]}}


def test_reference_rows_come_from_their_file_and_are_marked_as_reported():
    ref = lb.load_reference()
    values = {(r["model"], r["adapter"]): r["value"] for r in ref["rows"]}
    assert values[("Llama-2-7b-chat", "base")] == 54.7 and values[("Falcon-7B", "LoRA")] == 28.7
    assert "not rerun" in ref["note"]


def test_a_reference_row_without_a_value_is_refused(tmp_path):
    bad = tmp_path / "ref.yaml"
    bad.write_text("rows:\n  - {model: X, adapter: base}\n")
    with pytest.raises(lb.LeaderboardError, match=r"rows\[0\] lacks field 'value'"):
        lb.load_reference(bad)


def test_the_committed_page_is_built_from_the_committed_published_results(tmp_path):
    """leaderboard/index.html equals a rebuild from leaderboard/results/ alone (rebuild it after publishing:
    python -m leaderboard.build --published-only)."""
    from benchmark.published import STORE, load_published

    # The committed page, not the working copy: the main command rewrites leaderboard/index.html with its own run.
    shown = subprocess.run(["git", "show", "HEAD:leaderboard/index.html"], cwd=lb.REPO, capture_output=True, text=True)
    text = shown.stdout if shown.returncode == 0 else (lb.REPO / "leaderboard" / "index.html").read_text(encoding="utf-8")
    committed = page_json(text)
    rebuilt = page_json(lb.build(None, tmp_path / "index.html", published=STORE).read_text(encoding="utf-8"))
    published = {(c["model"], c["adapter"]) for c in load_published(STORE)}
    assert {(r["model"], r["adapter"]) for r in committed["rows"]} == published
    assert all(r["origin"] == "published" and r["sample"] == "full test split" for r in committed["rows"])
    assert committed == rebuilt
    assert str(lb.REPO) not in text
