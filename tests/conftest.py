"""Shared fixtures. Add yours below; keep them session-scoped when they prepare models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory) -> Path:
    """The prepared-model cache: ``$BENCH_CACHE`` when set (CI sets it), else a fresh temporary folder."""
    return Path(os.environ["BENCH_CACHE"]) if os.environ.get("BENCH_CACHE") else tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="session")
def prepared_smollm2(bench_cache) -> Path:
    """The full-precision prepared checkpoint of smollm2-135m-instruct (tokenizer with our chat template)."""
    from benchmark.loading import prepare
    from benchmark.registry import load_registry

    registry = load_registry()
    return prepare(registry.model("smollm2-135m-instruct"), bench_cache, precisions=("fp32",), registry=registry)["fp32"]


# ---------------------------------------------------------------- run_all on tiny models ---
# A temporary registry (tiny-llama with two LoRA adapters whose B weights are random, so they
# change the outputs), a folder of two tiny lm-eval tasks, and a helper that runs
# benchmark/run_all.py in-process or as a subprocess. Used by test_run_all.py and reliability/.

TINY_LLAMA = {
    "display_name": "tiny random Llama (smoke test)",
    "source": {"kind": "random", "tokenizer_from": "smollm2-135m-instruct",
               "config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}},
    "architecture": "llama", "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "template": "templates/Llama-v2-es.yaml", "preset": "presets/Llama2-seed.yaml",
}
TINY_MC_DOCS = [
    {"pregunta": "¿Cuál es la capital del Ecuador?", "opciones": ["Quito", "Lima", "Bogotá", "Caracas"], "correcta": 0},
    {"pregunta": "¿Qué moneda usa el Ecuador?", "opciones": ["el sucre", "el dólar", "el euro", "el peso"], "correcta": 1},
    {"pregunta": "¿Cuántas regiones naturales tiene el Ecuador?", "opciones": ["dos", "tres", "cuatro", "cinco"], "correcta": 2},
    {"pregunta": "¿En qué océano están las Galápagos?", "opciones": ["Índico", "Ártico", "Atlántico", "Pacífico"], "correcta": 3},
]
TINY_GEN_DOCS = [
    {"pregunta": "Escribe la capital del Ecuador.", "respuesta": "Quito"},
    {"pregunta": "Escribe un color de la bandera del Ecuador.", "respuesta": "amarillo"},
    {"pregunta": "Escribe el nombre del volcán más alto del Ecuador.", "respuesta": "Chimborazo"},
    {"pregunta": "Escribe una fruta de la Costa.", "respuesta": "banano"},
]


def write_jsonl(path: Path, rows) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_mc_task(folder: Path, name: str, docs=TINY_MC_DOCS) -> Path:
    """A multiple_choice task YAML (and its data) in ``folder``, as a user would drop it in."""
    data = write_jsonl(folder / "data" / f"{name}.jsonl", docs)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: \"Pregunta: {{pregunta}}\\nRespuesta:\"\n"
        "doc_to_choice: opciones\ndoc_to_target: correcta\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n",
        encoding="utf-8")
    return folder / f"{name}.yaml"


def write_gen_task(folder: Path, name: str, docs=TINY_GEN_DOCS) -> Path:
    """A generate_until task YAML (and its data) in ``folder``."""
    data = write_jsonl(folder / "data" / f"{name}.jsonl", docs)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: \"{{pregunta}}\"\ndoc_to_target: respuesta\n"
        "generation_kwargs:\n  until: [\"\\n\\n\"]\n  do_sample: false\n  max_gen_toks: 16\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n", encoding="utf-8")
    return folder / f"{name}.yaml"


def write_registry(path: Path, models: dict, suite: list[str]) -> Path:
    """A registry YAML with smollm2 (the tiny models' tokenizer donor) and ``models`` ({name: entry})."""
    import yaml

    from benchmark.registry import DEFAULT_REGISTRY

    real = yaml.safe_load(DEFAULT_REGISTRY.read_text())["models"]
    data = {"suites": {"t": suite}, "models": {"smollm2-135m-instruct": real["smollm2-135m-instruct"], **models}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def make_lora_adapter(base_folder: Path, out: Path, seed: int, r: int = 4, base_name: str = "tiny-llama") -> Path:
    """A LoRA adapter saved by PEFT with random (non-zero) B weights, so it changes the model's outputs."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory, bench_cache):
    """tiny-llama with adapters 'instruct' (r=4) and 'law' (r=8, its own preset file), plus a task folder."""
    from types import SimpleNamespace

    from benchmark.loading import prepare
    from benchmark.registry import REPO, load_registry

    root = tmp_path_factory.mktemp("tiny-bench")
    registry = write_registry(root / "registry.yaml", {"tiny-llama": TINY_LLAMA}, ["tiny-llama"])
    reg = load_registry(registry)
    fp32 = prepare(reg.model("tiny-llama"), bench_cache, precisions=("fp32",), registry=reg, log=lambda *a: None)["fp32"]
    law_preset = root / "presets" / "law.yaml"
    law_preset.parent.mkdir()
    law_preset.write_text((REPO / "presets" / "Llama2-seed.yaml").read_text())
    adapters = {"instruct": make_lora_adapter(fp32, root / "adapters" / "instruct", seed=1, r=4),
                "law": make_lora_adapter(fp32, root / "adapters" / "law", seed=2, r=8)}
    entry = {**TINY_LLAMA, "adapters": {"instruct": {"path": str(adapters["instruct"])},
                                        "law": {"path": str(adapters["law"]), "preset": str(law_preset)}}}
    write_registry(registry, {"tiny-llama": entry}, ["tiny-llama"])
    tasks = root / "tasks"
    write_mc_task(tasks, "tiny_mc")
    write_gen_task(tasks, "tiny_gen")
    return SimpleNamespace(root=root, registry=registry, cache=bench_cache, fp32=fp32, adapters=adapters,
                           law_preset=law_preset, tasks=tasks)


def run_all_args(bench, out: Path, *extra: str, tasks=("tiny_mc", "tiny_gen"), adapters=("instruct", "law", "base"),
                 include=None) -> list[str]:
    """run_all's command line for the tiny matrix: small sample, fp32 on the CPU, no page."""
    argv = ["--suite", "t", "--precision", "fp32", "--device", "cpu", "--limit", "2", "--batch-size", "4",
            "--max-gen-toks", "8", "--output-dir", str(out), "--cache-dir", str(bench.cache),
            "--include-path", str(include or bench.tasks), "--adapters", *adapters]
    if tasks:
        argv += ["--tasks", *tasks]
    return argv + ["--no-leaderboard", *extra] if "--leaderboard" not in extra else argv + list(extra)


@pytest.fixture(scope="session")
def run_all_inprocess():
    """Call benchmark.run_all.main(argv) with BENCH_REGISTRY pointing at ``registry``; returns the exit status."""
    from benchmark import run_all

    def call(registry: Path, argv: list[str]) -> int:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BENCH_REGISTRY", str(registry))
            return run_all.main(argv)

    return call


def subprocess_env(registry: Path) -> dict:
    return {**os.environ, "BENCH_REGISTRY": str(registry), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="session")
def matrix_run(tiny_bench, tmp_path_factory, run_all_inprocess):
    """One uninterrupted run of the tiny matrix (instruct, law, base x tiny_mc, tiny_gen): the reference."""
    from types import SimpleNamespace

    out = tmp_path_factory.mktemp("matrix") / "results"
    rc = run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, out))
    return SimpleNamespace(out=out, rc=rc, combos={a: out / "tiny-llama" / a for a in ("instruct", "law", "base")})


# ---------------------------------------------------------------- prepared real and smoke models ---
# Used by test_provisioning.py, test_generation.py and test_law_task.py.

@pytest.fixture(scope="session")
def registry():
    """The committed registry (adapters/registry.yaml), whatever $BENCH_REGISTRY says."""
    from benchmark.registry import DEFAULT_REGISTRY, load_registry

    return load_registry(DEFAULT_REGISTRY)


@pytest.fixture(scope="session")
def smollm2_checkpoints(bench_cache, registry) -> dict:
    """{'fp32': folder, '8bit': folder}: smollm2-135m-instruct prepared as `python -m benchmark prepare` does."""
    from benchmark.loading import prepare

    return prepare(registry.model("smollm2-135m-instruct"), bench_cache, registry=registry)


@pytest.fixture(scope="session")
def smoke_checkpoints(bench_cache, registry, smollm2_checkpoints) -> dict:
    """{name: {'fp32': folder, '8bit': folder}} for the architecture smoke models (suite 'smoke')."""
    from benchmark.loading import prepare

    return {name: prepare(registry.model(name), bench_cache, registry=registry, log=lambda *a: None)
            for name in registry.suite("smoke")}


def pytest_addoption(parser):
    parser.addoption("--reliability-report", action="store_true",
                     help="write tests/reliability/RESULTS.md from tests/reliability/cases.yaml and this run's outcomes")


def pytest_configure(config):
    if config.getoption("--reliability-report"):
        from reliability.report import ReliabilityReport

        config.pluginmanager.register(ReliabilityReport(config.rootpath), "reliability-report")
