"""text-generation-webui presets -> ``model.generate`` kwargs and lm-eval ``--gen_kwargs``.

An explicit key map, nothing passed through blindly:

* keys transformers supports natively map directly (``min_p`` included);
* ``repetition_penalty`` with ``repetition_penalty_range``, ``presence_penalty``
  and ``frequency_penalty`` run in :class:`benchmark.generation.WebuiPenalties`,
  a logits processor with the webui's semantics;
* ``penalty_alpha > 0`` routes to :func:`benchmark.generation.contrastive_search`;
* the webui's other samplers (mirostat, DRY, XTC, dynamic temperature,
  smoothing, top_a, tfs, sampler_priority, ...) are accepted silently at their
  inactive webui default and refused with a clear error when active.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.yamlio import load_yaml

# transformers GenerationConfig name for each natively supported webui key.
NATIVE = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "typical_p": "typical_p", "epsilon_cutoff": "epsilon_cutoff", "eta_cutoff": "eta_cutoff",
    "encoder_repetition_penalty": "encoder_repetition_penalty", "no_repeat_ngram_size": "no_repeat_ngram_size",
    "num_beams": "num_beams", "length_penalty": "length_penalty", "early_stopping": "early_stopping",
    "do_sample": "do_sample", "guidance_scale": "guidance_scale", "penalty_alpha": "penalty_alpha",
    "max_new_tokens": "max_new_tokens", "seed": None,
}
# Implemented here (benchmark.generation.WebuiPenalties).
PENALTIES = {"repetition_penalty": 1.0, "repetition_penalty_range": 1024, "presence_penalty": 0.0, "frequency_penalty": 0.0}
# webui samplers transformers lacks: their inactive default values.
INACTIVE_DEFAULTS = {
    "mirostat_mode": 0, "mirostat_tau": 5, "mirostat_eta": 0.1, "tfs": 1, "top_a": 0,
    "dry_multiplier": 0, "dry_allowed_length": 2, "dry_base": 1.75,
    "dry_sequence_breakers": '"\\n", ":", "\\"", "*"', "xtc_threshold": 0.1, "xtc_probability": 0,
    "dynamic_temperature": False, "dynatemp_low": 1, "dynatemp_high": 1, "dynatemp_exponent": 1,
    "smoothing_factor": 0, "smoothing_curve": 1, "top_n_sigma": 0, "temperature_last": False,
    "sampler_priority": None, "prompt_lookup_num_tokens": 0, "static_cache": False,
    "truncation_length": None, "ban_eos_token": False, "add_bos_token": True,
    "skip_special_tokens": True, "auto_max_new_tokens": False,
}
# webui defaults of the native keys, used to decide whether sampling is on.
WEBUI_DEFAULTS = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "num_beams": 1}


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the key."""


@dataclass
class Preset:
    name: str
    path: Path | None
    values: dict
    generate: dict = field(default_factory=dict)      # native transformers kwargs
    penalties: dict = field(default_factory=dict)     # for WebuiPenalties (empty when inactive)
    contrastive: bool = False
    accepted_inactive: list = field(default_factory=list)

    def provenance(self) -> dict:
        return {"name": self.name, "values": self.values, "generate_kwargs": self.generate,
                "webui_penalties": self.penalties, "contrastive_search": self.contrastive,
                "accepted_at_inactive_default": self.accepted_inactive}

    def generate_kwargs(self) -> dict:
        """kwargs for ``model.generate``: native keys, logits processors, contrastive search."""
        from transformers import LogitsProcessorList

        from benchmark.generation import WebuiPenalties, contrastive_search

        kwargs = dict(self.generate)
        if self.penalties:
            kwargs["logits_processor"] = LogitsProcessorList([WebuiPenalties(**self.penalties)])
        if self.contrastive:
            kwargs["custom_generate"] = contrastive_search
        return kwargs

    def lm_eval_gen_kwargs(self) -> dict:
        """Plain values for lm-eval's ``--gen_kwargs`` (stock lm-eval, no custom code)."""
        if self.contrastive:
            raise PresetError(f"{self.path or self.name}: penalty_alpha > 0 (contrastive search) needs "
                              "benchmark.generation.contrastive_search; stock lm_eval cannot pass a callable. "
                              "Use benchmark/run_all.py, or the 'Deterministic' preset")
        kwargs = dict(self.generate)
        if self.penalties:
            if self.penalties["presence_penalty"] or self.penalties["frequency_penalty"]:
                raise PresetError(f"{self.path or self.name}: presence_penalty/frequency_penalty are webui samplers "
                                  "that stock lm_eval cannot pass; use benchmark/run_all.py")
            # transformers' own repetition penalty covers the whole context; equal to the
            # webui's when the context is shorter than repetition_penalty_range.
            kwargs["repetition_penalty"] = self.penalties["repetition_penalty"]
        return kwargs

    def vllm_sampling_kwargs(self, seed: int | None = None) -> dict:
        """``vllm.SamplingParams`` keys for this preset; a sampler vLLM lacks is a clear error.

        Greedy presets (``do_sample: false``) become ``temperature=0``. The webui's repetition penalty
        range is not a vLLM concept: vLLM penalises the whole context, like transformers' own.
        """
        where = self.path or self.name
        if self.contrastive:
            raise PresetError(f"{where}: penalty_alpha > 0 (contrastive search) cannot run on vLLM; "
                              "use --backend hf or the 'Deterministic' preset")
        unsupported = {"typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "encoder_repetition_penalty": 1.0,
                       "no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0, "guidance_scale": 1.0}
        active = [k for k, neutral in unsupported.items() if k in self.generate and self.generate[k] not in (neutral, None)]
        if active:
            raise PresetError(f"{where}: {', '.join(active)} has no vLLM equivalent; use --backend hf")
        if not self.generate.get("do_sample", WEBUI_DEFAULTS["do_sample"]):
            kwargs = {"temperature": 0.0}
        else:
            kwargs = {k: self.generate[k] for k in ("temperature", "top_p", "min_p") if k in self.generate}
            if self.generate.get("top_k"):
                kwargs["top_k"] = int(self.generate["top_k"])
            if seed is not None:
                kwargs["seed"] = int(seed)
        if self.penalties:
            kwargs.update({k: self.penalties[k] for k in ("repetition_penalty", "presence_penalty", "frequency_penalty")
                           if self.penalties[k] != PENALTIES[k]})
        return kwargs

    def lm_eval_gen_kwargs_string(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.lm_eval_gen_kwargs().items())


def _number(value, key, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{where}: key '{key}' must be a number, got {value!r}")
    return value


def preset_from_values(values, name: str, path: Path | None = None) -> Preset:
    where = path or name
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise PresetError(f"{where}: a preset must be a mapping of webui sampler keys to values")
    known = set(NATIVE) | set(PENALTIES) | set(INACTIVE_DEFAULTS)
    generate, penalties, inactive = {}, dict(PENALTIES), []
    for key, value in values.items():
        if key not in known:
            raise PresetError(f"{where}: unknown key '{key}'. Supported keys: {', '.join(sorted(known))}")
        if key in INACTIVE_DEFAULTS:
            if value != INACTIVE_DEFAULTS[key] and not (key == "sampler_priority" and value is None):
                supported = ", ".join(sorted(set(NATIVE) | set(PENALTIES)))
                raise PresetError(f"{where}: key '{key}' = {value!r} activates a webui sampler that this harness "
                                  f"does not implement (inactive value: {INACTIVE_DEFAULTS[key]!r}). "
                                  f"Supported keys: {supported}")
            inactive.append(key)
        elif key in PENALTIES:
            penalties[key] = _number(value, key, where)
        elif NATIVE[key] is not None:
            generate[NATIVE[key]] = value
    # Range checks on what is used.
    if "temperature" in generate and _number(generate["temperature"], "temperature", where) < 0:
        raise PresetError(f"{where}: key 'temperature' must be >= 0, got {generate['temperature']}")
    if "top_p" in generate and not 0 < _number(generate["top_p"], "top_p", where) <= 1:
        raise PresetError(f"{where}: key 'top_p' must be in (0, 1], got {generate['top_p']}")
    for key in ("top_k", "num_beams", "no_repeat_ngram_size", "max_new_tokens"):
        if key in generate and (not isinstance(generate[key], int) or isinstance(generate[key], bool) or generate[key] < 0):
            raise PresetError(f"{where}: key '{key}' must be a non-negative integer, got {generate[key]!r}")
    if "min_p" in generate and not 0 <= _number(generate["min_p"], "min_p", where) <= 1:
        raise PresetError(f"{where}: key 'min_p' must be in [0, 1], got {generate['min_p']}")
    if "do_sample" in generate and not isinstance(generate["do_sample"], bool):
        raise PresetError(f"{where}: key 'do_sample' must be true or false")
    if penalties["repetition_penalty"] <= 0:
        raise PresetError(f"{where}: key 'repetition_penalty' must be > 0")
    if penalties["repetition_penalty_range"] < 0:
        raise PresetError(f"{where}: key 'repetition_penalty_range' must be >= 0 (0 = whole context)")
    # The webui samples unless told otherwise; its temperature 0 means greedy.
    if generate.get("temperature") == 0:
        generate["do_sample"] = False
    generate.setdefault("do_sample", WEBUI_DEFAULTS["do_sample"])
    if generate["do_sample"] is False:
        for key in ("temperature", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"):
            generate.pop(key, None)
        if not generate.get("penalty_alpha"):
            generate.pop("top_k", None)
    else:
        # The webui's values for the sampling keys a preset leaves out, stated explicitly: otherwise the
        # model's generation_config would decide (transformers' top_k is 50; lm-eval's temperature is 0).
        for key in ("temperature", "top_p", "top_k"):
            generate.setdefault(key, WEBUI_DEFAULTS[key])
    contrastive = bool(generate.get("penalty_alpha"))
    if contrastive:
        if generate.get("do_sample") or generate.get("num_beams", 1) > 1:
            raise PresetError(f"{where}: penalty_alpha (contrastive search) needs do_sample: false and num_beams: 1")
        if not generate.get("top_k"):
            raise PresetError(f"{where}: penalty_alpha needs top_k > 0 (the candidate count)")
    else:
        generate.pop("penalty_alpha", None)
    active = (penalties["repetition_penalty"] != 1.0 or penalties["presence_penalty"] or penalties["frequency_penalty"])
    return Preset(name=name, path=path, values=dict(values), generate=generate,
                  penalties=penalties if active else {}, contrastive=contrastive, accepted_inactive=inactive)


def load_preset(path: str | Path) -> Preset:
    path = Path(path)
    return preset_from_values(load_yaml(path, "generation preset"), name=path.stem, path=path)


def find_preset(name_or_path: str, search_dir: Path | None = None) -> Preset:
    """A preset by file path or by name in ``presets/`` (``--preset Deterministic``)."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return load_preset(candidate)
    search_dir = search_dir or Path(__file__).resolve().parent.parent / "presets"
    path = search_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in search_dir.glob("*.yaml"))
        raise PresetError(f"preset '{name_or_path}' not found in {search_dir}; available: {', '.join(names)}")
    return load_preset(path)
