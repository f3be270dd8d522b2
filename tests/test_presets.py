"""Presets -> generate kwargs and lm-eval gen_kwargs; safe YAML loading; the webui's penalties.

Every expectation is written by hand from the webui's preset format and the
seed's values, not computed with the mapping under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from benchmark.generation import WebuiPenalties, contrastive_search
from benchmark.presets import PresetError, find_preset, load_preset, preset_from_values
from benchmark.registry import REPO, load_registry
from benchmark.yamlio import MAX_DEPTH, YamlError

PRESETS = REPO / "presets"
WEBUI = REPO / "tests" / "fixtures" / "webui"
WEBUI_PRESETS = sorted(WEBUI.glob("presets*/*.yaml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the seed presets

SAMPLE = {"do_sample": True}
SEED = {
    # name: (generate kwargs without processors, repetition penalty or None, contrastive)
    "Mistral-seed": ({"temperature": 0.4, "top_p": 0.9, "top_k": 30, **SAMPLE}, 1.15, False),
    "Llama2-seed": ({"temperature": 0.5, "top_p": 0.3, "top_k": 40, **SAMPLE}, 1.25, False),
    # Beam-sample: sampling with 5 beams.
    "Falcon-seed": ({"temperature": 0.3, "top_p": 0.7, "top_k": 40, "num_beams": 5, "length_penalty": -4, **SAMPLE},
                    1.5, False),
    "Contrastive Search": ({"do_sample": False, "top_k": 4, "penalty_alpha": 0.3}, None, True),
    "Deterministic": ({"do_sample": False}, None, False),
}


def test_seed_preset_files_are_the_five_expected():
    assert {p.stem for p in PRESETS.glob("*.yaml")} == set(SEED)


@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_presets_map_to_generate_kwargs(name):
    native, penalty, contrastive = SEED[name]
    preset = find_preset(name)
    kwargs = preset.generate_kwargs()
    processors = kwargs.pop("logits_processor", [])
    custom = kwargs.pop("custom_generate", None)
    assert kwargs == native
    assert (custom is contrastive_search) == contrastive
    if penalty is None:
        assert list(processors) == []
    else:
        (processor,) = processors
        assert isinstance(processor, WebuiPenalties)
        assert (processor.penalty, processor.range, processor.presence, processor.frequency) == (penalty, 1024, 0.0, 0.0)


@pytest.mark.parametrize("name", sorted(set(SEED) - {"Contrastive Search"}))
def test_seed_presets_map_to_lm_eval_gen_kwargs(name):
    from lm_eval.utils import simple_parse_args_string

    native, penalty, _ = SEED[name]
    expected = dict(native, **({"repetition_penalty": penalty} if penalty else {}))
    preset = find_preset(name)
    assert preset.lm_eval_gen_kwargs() == expected
    # The --gen_kwargs string reads back, through lm-eval's own parser, as the same values.
    assert simple_parse_args_string(preset.lm_eval_gen_kwargs_string()) == expected


def test_contrastive_search_is_refused_for_stock_lm_eval():
    preset = find_preset("Contrastive Search")
    with pytest.raises(PresetError, match=r"Contrastive Search\.yaml: penalty_alpha > 0 \(contrastive search\)"):
        preset.lm_eval_gen_kwargs()


def test_registry_presets_all_load():
    registry = load_registry()
    paths = {e.preset for e in registry.models.values()}
    paths |= {a.preset for e in registry.models.values() for a in e.adapters.values()}
    for path in paths:
        load_preset(path)
    merged = {a.preset.stem for e in registry.models.values() for n, a in e.adapters.items() if n == "merged"}
    assert merged == {"Contrastive Search"}


def test_find_preset_by_unknown_name_lists_the_available_ones():
    with pytest.raises(PresetError, match=r"preset 'Nope' not found .*available: Contrastive Search, Deterministic"):
        find_preset("Nope")


# ---------------------------------------------------------------- the kwargs drive transformers

@pytest.fixture(scope="module")
def tiny_llama():
    """The registry's tiny-llama architecture with a 64-token vocabulary (no tokenizer needed)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    params = dict(load_registry().model("tiny-llama").source["config"])
    config = AutoConfig.for_model(params.pop("model_type"), vocab_size=64, pad_token_id=0, bos_token_id=None,
                                  eos_token_id=None, **params)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a 64-wide model: extra threads only contend (100x slower on a busy machine)
    yield AutoModelForCausalLM.from_config(config).eval()
    torch.set_num_threads(threads)


PROMPT = torch.tensor([[5, 9, 13, 17, 21, 25], [3, 3, 8, 40, 41, 42]])


def greedy(model, input_ids, steps):
    ids = input_ids
    with torch.no_grad():
        for _ in range(steps):
            next_id = model(ids).logits[:, -1, :].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=-1)
    return ids


@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_presets_run_in_generate(tiny_llama, name):
    kwargs = find_preset(name).generate_kwargs()
    torch.manual_seed(1)
    first = tiny_llama.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=6, **kwargs)
    torch.manual_seed(1)
    again = tiny_llama.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=6, **kwargs)
    assert first.shape == (2, 12)
    assert torch.equal(first[:, :6], PROMPT)
    assert torch.equal(first, again)          # seeded: reproducible


@pytest.mark.parametrize("values", [{"do_sample": False, "top_k": 1}, {"temperature": 0}, {"temperature": 0, "top_p": 0.5}],
                         ids=["Deterministic", "temperature-0", "temperature-0-top-p"])
def test_greedy_presets_decode_greedily(tiny_llama, values):
    # The webui documents temperature 0 as "deterministic (only the most likely token is used)".
    kwargs = preset_from_values(values, "greedy").generate_kwargs()
    out = tiny_llama.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=8, **kwargs)
    assert torch.equal(out, greedy(tiny_llama, PROMPT, 8))


# ---------------------------------------------------------------- every webui preset

GENERATE = "generate"
REFUSED = "refused"
WEBUI_TABLE = {
    # file: (GENERATE, native kwargs, repetition penalty or None, contrastive)  |  (REFUSED, the active key)
    "presets/Contrastive Search": (GENERATE, {"do_sample": False, "top_k": 4, "penalty_alpha": 0.3}, None, True),
    "presets/Creative": (REFUSED, "xtc_probability"),
    "presets/Deterministic": (GENERATE, {"do_sample": False}, None, False),
    # Only top_p: the webui's temperature 1 and no top-k, stated so the model's generation_config cannot decide.
    "presets/Top-P": (GENERATE, {"top_p": 0.95, "temperature": 1.0, "top_k": 0, **SAMPLE}, None, False),
    "presets-2023-12/Asterism": (GENERATE, {"temperature": 1.68, "top_p": 0.17, "top_k": 77, **SAMPLE}, 1.02, False),
    "presets-2023-12/Big O": (REFUSED, "tfs"),
    "presets-2023-12/Contrastive Search": (GENERATE, {"do_sample": False, "top_k": 4, "penalty_alpha": 0.3}, None, True),
    "presets-2023-12/Debug-deterministic": (GENERATE, {"do_sample": False}, None, False),
    "presets-2023-12/Divine Intellect": (GENERATE, {"temperature": 1.31, "top_p": 0.14, "top_k": 49, **SAMPLE}, 1.17, False),
    "presets-2023-12/LLaMA-Precise": (GENERATE, {"temperature": 0.7, "top_p": 0.1, "top_k": 40, **SAMPLE}, 1.18, False),
    "presets-2023-12/Midnight Enigma": (GENERATE, {"temperature": 0.98, "top_p": 0.37, "top_k": 100, **SAMPLE}, 1.18, False),
    "presets-2023-12/Mirostat": (REFUSED, "mirostat_mode"),
    "presets-2023-12/Shortwave": (GENERATE, {"temperature": 1.53, "top_p": 0.64, "top_k": 33, **SAMPLE}, 1.07, False),
    "presets-2023-12/Space Alien": (GENERATE, {"temperature": 1.31, "top_p": 0.29, "top_k": 72, **SAMPLE}, 1.09, False),
    "presets-2023-12/StarChat": (GENERATE, {"temperature": 0.2, "top_p": 0.95, "top_k": 50, **SAMPLE}, None, False),
    "presets-2023-12/Titanic": (GENERATE, {"temperature": 1.01, "top_p": 0.21, "top_k": 91,
                                           "encoder_repetition_penalty": 1.07, **SAMPLE}, 1.21, False),
    "presets-2023-12/Yara": (GENERATE, {"temperature": 0.82, "top_p": 0.21, "top_k": 72, **SAMPLE}, 1.19, False),
    "presets-2023-12/simple-1": (GENERATE, {"temperature": 0.7, "top_p": 0.9, "top_k": 20, **SAMPLE}, 1.15, False),
    "presets-2023-12/tfs-with-top-a": (REFUSED, "tfs"),
}


def test_webui_preset_table_covers_every_shared_file():
    assert len(WEBUI_PRESETS) >= 19, WEBUI
    assert {f"{p.parent.name}/{p.stem}" for p in WEBUI_PRESETS} == set(WEBUI_TABLE)


@pytest.mark.parametrize("key", sorted(WEBUI_TABLE))
def test_every_webui_preset_maps_or_is_refused_clearly(key):
    path = WEBUI / f"{key}.yaml"
    expected = WEBUI_TABLE[key]
    if expected[0] == REFUSED:
        with pytest.raises(PresetError) as info:
            load_preset(path)
        message = str(info.value)
        assert message.startswith(f"{path}: key '{expected[1]}' = ")
        assert "activates a webui sampler that this harness does not implement" in message
        supported = message.split("Supported keys: ", 1)[1].split(", ")
        for key_name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "repetition_penalty_range",
                         "presence_penalty", "frequency_penalty", "penalty_alpha"):
            assert key_name in supported
        assert expected[1] not in supported
        return
    _, native, penalty, contrastive = expected
    preset = load_preset(path)
    assert preset.generate == native
    assert preset.contrastive == contrastive
    assert (preset.penalties.get("repetition_penalty") if preset.penalties else None) == penalty
    if contrastive:
        with pytest.raises(PresetError, match="contrastive search"):
            preset.lm_eval_gen_kwargs()
    else:
        assert preset.lm_eval_gen_kwargs() == dict(native, **({"repetition_penalty": penalty} if penalty else {}))


def test_a_sampling_preset_runs_under_lm_eval_defaults(tiny_llama):
    """lm-eval fills in temperature 0.0 when gen_kwargs has none; a sampling preset must not hit that."""
    kwargs = load_preset(WEBUI / "presets" / "Top-P.yaml").lm_eval_gen_kwargs()
    kwargs.setdefault("temperature", 0.0)        # what lm_eval.models.huggingface does
    out = tiny_llama.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=3, **kwargs)
    assert out.shape == (2, 9)


# ---------------------------------------------------------------- the webui's other samplers

INACTIVE = {"mirostat_mode": 0, "mirostat_tau": 5, "mirostat_eta": 0.1, "tfs": 1, "top_a": 0, "dry_multiplier": 0,
            "xtc_probability": 0, "dynamic_temperature": False, "smoothing_factor": 0, "sampler_priority": None}


def test_inactive_webui_samplers_are_accepted_and_recorded():
    preset = preset_from_values({"temperature": 0.7, "top_p": 0.8, **INACTIVE}, "inactive")
    assert preset.generate == {"temperature": 0.7, "top_p": 0.8, "top_k": 0, **SAMPLE}
    assert sorted(preset.accepted_inactive) == sorted(INACTIVE)
    assert sorted(preset.provenance()["accepted_at_inactive_default"]) == sorted(INACTIVE)


@pytest.mark.parametrize("key,value", [
    ("mirostat_mode", 2), ("tfs", 0.95), ("top_a", 0.2), ("dry_multiplier", 0.8), ("xtc_probability", 0.5),
    ("dynamic_temperature", True), ("smoothing_factor", 0.3), ("top_n_sigma", 1.0),
    ("sampler_priority", ["temperature", "top_k"]),
])
def test_active_webui_samplers_are_refused(tmp_path, key, value):
    import yaml

    path = write(tmp_path, "Active.yaml", yaml.safe_dump({"temperature": 0.7, key: value}))
    with pytest.raises(PresetError, match=rf"Active\.yaml: key '{key}' = .* Supported keys: .*repetition_penalty_range"):
        load_preset(path)


def test_presence_and_frequency_run_in_the_processor_but_not_in_stock_lm_eval():
    preset = preset_from_values({"temperature": 0.7, "presence_penalty": 0.4, "frequency_penalty": 0.2,
                                 "repetition_penalty_range": 64}, "pf")
    (processor,) = preset.generate_kwargs()["logits_processor"]
    assert (processor.penalty, processor.range, processor.presence, processor.frequency) == (1.0, 64, 0.4, 0.2)
    with pytest.raises(PresetError, match="presence_penalty/frequency_penalty"):
        preset.lm_eval_gen_kwargs()


# ---------------------------------------------------------------- bad presets

BAD = [
    ("temperature: -0.5\n", r"key 'temperature' must be >= 0"),
    ("top_p: 0\n", r"key 'top_p' must be in \(0, 1\]"),
    ("top_p: 1.5\n", r"key 'top_p' must be in \(0, 1\]"),
    ("temperature: 0.7\nfoo: 1\n", r"unknown key 'foo'\. Supported keys: .*temperature"),
    ("temperature: hot\n", r"key 'temperature' must be a number"),
    ("top_k: 2.5\n", r"key 'top_k' must be a non-negative integer"),
    ("min_p: 2\n", r"key 'min_p' must be in \[0, 1\]"),
    ("do_sample: 'yes'\n", r"key 'do_sample' must be true or false"),
    ("repetition_penalty: 0\n", r"key 'repetition_penalty' must be > 0"),
    ("repetition_penalty: 1.1\nrepetition_penalty_range: -1\n", r"key 'repetition_penalty_range' must be >= 0"),
    ("do_sample: false\npenalty_alpha: 0.6\n", r"penalty_alpha needs top_k > 0"),
    ("penalty_alpha: 0.6\ntop_k: 4\n", r"penalty_alpha \(contrastive search\) needs do_sample: false"),
    ("- temperature\n", r"a preset must be a mapping"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[b[1].split("'")[1] if "'" in b[1] else b[1][:20] for b in BAD])
def test_bad_presets_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, "Bad.yaml", text)
    with pytest.raises(PresetError, match=rf"^{re.escape(str(tmp_path))}/Bad\.yaml: .*{message}"):
        load_preset(path)


def _laughs(levels: int = 9) -> str:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    names = "bcdefghijk"
    for i in range(levels - 1):
        prev, name = ("a" if i == 0 else names[i - 1]), names[i]
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text


YAML_BAD = [
    ("syntax", "temperature: 0.5\ntop_p: [0.9\n", r"line 3, column 1 YAML syntax error"),
    ("bad-indent", "temperature: 0.5\n  top_p: 0.9\n", r"line 2, column \d+ YAML syntax error"),
    ("nested", "temperature: " + "{a: " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1) + "\n",
     rf"nested deeper than {MAX_DEPTH} levels"),
    ("very-deep", "temperature: " + "[" * 3000 + "]" * 3000 + "\n", r"nested (too deeply to parse|deeper than)"),
    ("billion-laughs", _laughs(), r"expands to more than \d+ values"),
    ("huge", "# " + "x" * 1_100_000 + "\ntemperature: 0.5\n", r"over the 1000000-byte limit"),
]


@pytest.mark.parametrize("name,text,message", YAML_BAD, ids=[b[0] for b in YAML_BAD])
def test_unsafe_or_broken_yaml_is_refused_naming_the_file(tmp_path, name, text, message):
    path = write(tmp_path, f"{name}.yaml", text)
    with pytest.raises(YamlError, match=rf"^{re.escape(str(tmp_path))}/{name}\.yaml:.*{message}"):
        load_preset(path)


def test_non_utf8_preset_is_refused(tmp_path):
    path = tmp_path / "Latin1.yaml"
    path.write_bytes("# año\ntemperature: 0.5\n".encode("latin-1"))
    with pytest.raises(YamlError, match=r"Latin1\.yaml: not UTF-8"):
        load_preset(path)


def test_an_empty_preset_means_webui_defaults(tmp_path):
    preset = load_preset(write(tmp_path, "Empty.yaml", "# nothing set\n"))
    assert preset.generate == {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    assert preset.penalties == {}


# ---------------------------------------------------------------- WebuiPenalties

def _random(batch=3, length=20, vocab=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=generator)
    scores = torch.randn(batch, vocab, generator=generator) * 4
    return ids, scores


@pytest.mark.parametrize("penalty", [1.3, 0.8])
@pytest.mark.parametrize("window", [20, 1024, 0], ids=["range=length", "range>length", "range=0-whole"])
def test_penalties_equal_transformers_when_the_range_covers_the_context(penalty, window):
    from transformers import RepetitionPenaltyLogitsProcessor

    ids, scores = _random()
    ours = WebuiPenalties(repetition_penalty=penalty, repetition_penalty_range=window)(ids, scores.clone())
    theirs = RepetitionPenaltyLogitsProcessor(penalty=penalty)(ids, scores.clone())
    assert torch.allclose(ours, theirs)
    assert not torch.allclose(ours, scores)


def test_a_small_range_penalises_only_recent_tokens():
    ids = torch.tensor([[5, 6, 7, 8, 1, 2, 3]])
    scores = torch.tensor([[1.0, 2.0, -2.0, 4.0, 0.0, 2.0, -1.0, 3.0, 6.0, 1.0]])
    out = WebuiPenalties(repetition_penalty=2.0, repetition_penalty_range=3)(ids, scores.clone())
    # Tokens 1, 2, 3 are the last three: positive logits halved, negative doubled; 5..8 are out of range.
    expected = torch.tensor([[1.0, 1.0, -4.0, 2.0, 0.0, 2.0, -1.0, 3.0, 6.0, 1.0]])
    assert torch.equal(out, expected)


@pytest.mark.parametrize("window,expected", [
    # ids [4, 4, 4, 7]: token 4 seen 3 times, token 7 once.
    (0, [2.0, 0.0, 0.0, 0.0, 1.0 / 2 - 0.5 - 3 * 0.25, 0.0, 0.0, -1.0 * 2 - 0.5 - 0.25, 0.0]),
    # Only the last two tokens [4, 7]: token 4 counted once.
    (2, [2.0, 0.0, 0.0, 0.0, 1.0 / 2 - 0.5 - 0.25, 0.0, 0.0, -1.0 * 2 - 0.5 - 0.25, 0.0]),
])
def test_presence_and_frequency_are_subtracted_after_the_multiplicative_penalty(window, expected):
    ids = torch.tensor([[4, 4, 4, 7]])
    scores = torch.tensor([[2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0]])
    processor = WebuiPenalties(repetition_penalty=2.0, repetition_penalty_range=window, presence_penalty=0.5,
                               frequency_penalty=0.25)
    assert torch.allclose(processor(ids, scores.clone()), torch.tensor([expected]))


def test_penalties_are_per_row():
    ids = torch.tensor([[1, 1], [2, 2]])
    scores = torch.ones(2, 4)
    out = WebuiPenalties(repetition_penalty=1.0, presence_penalty=1.0)(ids, scores.clone())
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]]))


def test_penalty_must_be_positive():
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        WebuiPenalties(repetition_penalty=0)
