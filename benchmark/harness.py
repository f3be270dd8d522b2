"""lm-eval's HFLM with a webui preset and template stop strings applied.

``PresetLM`` is what ``run_all`` hands to ``lm_eval.simple_evaluate``. It
keeps everything of HFLM (batching, left padding, sorting by length, left
truncation, caching) and changes three things:

* the combination's preset decides how to decode (the task YAML's sampling keys
  are replaced; ``until`` and ``max_gen_toks`` are kept), through
  :meth:`benchmark.presets.Preset.generate_kwargs`, so webui penalties and
  contrastive search work;
* the template's stop strings are added to every request's ``until``;
* prompts longer than the context are counted, for generation and for
  log-likelihood requests (HFLM truncates them from the left), with a warning,
  and reported in the results (``benchmark.truncated_prompts``);
* progress is shown as one bar per task, with its ETA, in place of lm-eval's one
  bar per request type; and each answer goes to lm-eval's response cache under
  the task's own request as soon as it is computed (:class:`TaskProgressHook`),
  so a run killed half-way through a combination resumes from the last answer.

The model can be switched between adapters between evaluations
(:meth:`use_adapter`); the base model is loaded once.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter, defaultdict

from lm_eval.api.model import hash_args
from lm_eval.models.huggingface import HFLM

log = logging.getLogger("benchmark")
TASK_SAMPLING_KEYS = {"do_sample", "temperature", "top_p", "top_k", "min_p", "typical_p", "num_beams",
                      "repetition_penalty", "penalty_alpha", "length_penalty", "no_repeat_ngram_size"}


class TaskProgressHook:
    """Stands in for lm-eval's cache hook while one batch of requests runs.

    HFLM reports every finished request to ``cache_hook.add_partial`` with the
    arguments it computed (for generation, the adjusted copy: preset keys removed,
    template stop strings added). This hook

    * stores the answer under the task's *original* request, the key lm-eval's
      CachingLM looks up on the next run (stored under the adjusted copy, the
      answers of a killed run were never found again and a half-done combination
      started from zero), and
    * advances the bar of the request's task.
    """

    def __init__(self, inner, attr, requests, sent_args, disable=False):
        from tqdm.auto import tqdm

        self.inner, self.attr = inner, attr
        self.pending = defaultdict(list)   # hash of the args HFLM reports -> [(original args, task)]
        for request, args in zip(requests, sent_args, strict=True):
            self.pending[hash_args(attr, args)].append((request.args, request.task_name))
        totals = Counter(request.task_name for request in requests)
        self.bars = {task: tqdm(total=n, desc=f"{task or 'requests'} ({attr})", unit="req", disable=disable,
                                dynamic_ncols=True) for task, n in sorted(totals.items(), key=lambda kv: str(kv[0]))}

    def add_partial(self, attr, req, res):
        queue = self.pending.get(hash_args(attr, req)) if attr == self.attr else None
        original, task = queue.pop(0) if queue else (req, None)
        self.inner.add_partial(attr, original, res)
        if task in self.bars:
            self.bars[task].update(1)

    def close(self):
        for bar in self.bars.values():
            bar.close()


class PresetRequests:
    """What every backend of ``run_all`` does to lm-eval's requests, whatever runs the model.

    Mixed in before lm-eval's HFLM or VLLM: the task's sampling keys give way to the preset's,
    the template's stop strings join ``until``, ``--max-gen-toks`` caps each task's own cap,
    and answers reach lm-eval's cache under the task's own request with one progress bar per task.
    """

    preset = None
    stop_strings: list = []
    max_gen_toks_cap = None   # run_all's --max-gen-toks: a cap, each task keeps a smaller own value

    def set_preset(self, preset, stop_strings=None):
        self.preset = preset
        if stop_strings is not None:
            self.stop_strings = list(stop_strings)

    def preset_request_kwargs(self) -> dict:
        """Extra generation kwargs each request carries for this backend (HF applies the preset itself)."""
        return {}

    def adjusted_generation_requests(self, requests) -> list:
        # Adjusted copies go to the backend; the task's own requests stay as they are, because lm-eval's
        # response cache (CachingLM) stores each answer under ``request.args`` after this call and
        # looks it up under the unchanged args of the next run.
        adjusted = []
        extra = self.preset_request_kwargs()
        for request in requests:
            context, gen_kwargs = request.args
            gen_kwargs = {k: v for k, v in dict(gen_kwargs).items() if k not in TASK_SAMPLING_KEYS}
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            gen_kwargs["until"] = until + [s for s in self.stop_strings if s not in until]
            if self.max_gen_toks_cap:
                gen_kwargs["max_gen_toks"] = min(int(gen_kwargs.get("max_gen_toks", self.max_gen_toks)),
                                                 self.max_gen_toks_cap)
            gen_kwargs.update(extra)
            clone = copy.copy(request)
            clone.arguments = (context, gen_kwargs)   # Instance.args is a read-only view
            adjusted.append(clone)
        return adjusted

    def generate_until(self, requests, disable_tqdm: bool = False):
        adjusted = self.adjusted_generation_requests(requests)
        return self._with_task_progress("generate_until", requests, [c.args for c in adjusted], disable_tqdm,
                                        lambda: super(PresetRequests, self).generate_until(adjusted, disable_tqdm=True))

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._with_task_progress("loglikelihood", requests, [r.args for r in requests], disable_tqdm,
                                        lambda: super(PresetRequests, self).loglikelihood(requests, disable_tqdm=True))

    def _with_task_progress(self, attr, requests, sent_args, disable_tqdm, call):
        hook = self.cache_hook
        self.cache_hook = TaskProgressHook(hook, attr, requests, sent_args,
                                           disable=disable_tqdm or getattr(self, "rank", 0) != 0)
        try:
            return call()
        finally:
            self.cache_hook.close()
            self.cache_hook = hook


LOGLIKELIHOOD_LOGITS_BYTES = 1 << 30


def loglikelihood_batch_size(requests, batch_size: int, vocab_size: int, max_length: int) -> int:
    """The largest batch, up to ``batch_size``, whose float32 logits over the longest request (context plus
    continuation, as HFLM cuts it) fit in LOGLIKELIHOOD_LOGITS_BYTES; at least 1."""
    longest = min(max(len(ctx) + len(cont) for _, ctx, cont in requests), max_length + 1)
    return max(1, min(batch_size, LOGLIKELIHOOD_LOGITS_BYTES // (longest * vocab_size * 4)))


class PresetLM(PresetRequests, HFLM):
    def __init__(self, model, tokenizer, preset, stop_strings=(), batch_size=8, max_length=None, **kwargs):
        super().__init__(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length, **kwargs)
        self.preset = preset
        self.stop_strings = list(stop_strings)
        self.truncated_prompts = 0
        self.generated_tokens = 0
        self.max_gen_toks_cap = None

    def use_adapter(self, name: str | None):
        """Activate a loaded PEFT adapter by name, or the bare base model with ``None``."""
        model = self.model
        if not hasattr(model, "peft_config"):
            if name is not None:
                raise ValueError(f"adapter '{name}' requested but no adapter is attached")
            return
        if name is None:
            model.base_model.disable_adapter_layers()
        else:
            model.base_model.enable_adapter_layers()
            model.set_adapter(name)

    def tok_batch_encode(self, strings, padding_side="left", left_truncate_len=None, truncation=False):
        if left_truncate_len:
            lengths = [len(self.tokenizer(s, add_special_tokens=False).input_ids) for s in strings]
            over = sum(n > left_truncate_len for n in lengths)
            if over:
                self.truncated_prompts += over
                log.warning("%d prompt(s) longer than %d tokens were truncated from the left", over, left_truncate_len)
        return super().tok_batch_encode(strings, padding_side=padding_side, left_truncate_len=left_truncate_len,
                                        truncation=truncation)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        # HFLM keeps the last max_length + 1 tokens of context + continuation; count the contexts it cuts.
        over = {tuple(req[1]) for req in requests if len(req[1]) + len(req[2]) > self.max_length + 1}
        if over:
            self.truncated_prompts += len(over)
            log.warning("%d prompt(s) longer than %d tokens were truncated from the left", len(over), self.max_length)
        # HFLM scores a batch from its [batch, length, vocabulary] logits and their log-softmax, both whole: at the
        # generation batch size a 262k-token vocabulary needs tens of GB (Gemma-3-270M, 64 options of ~250 tokens:
        # killed at 24 GB). Log-likelihood batches hold at most LOGLIKELIHOOD_LOGITS_BYTES of float32 logits.
        generation_batch = self.batch_size_per_gpu
        if isinstance(generation_batch, int) and requests:
            self.batch_size_per_gpu = loglikelihood_batch_size(requests, generation_batch, self._logits_width(),
                                                               self.max_length)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self.batch_size_per_gpu = generation_batch

    def _logits_width(self) -> int:
        config = getattr(self.model, "config", None)
        return int(getattr(config, "vocab_size", None) or self.vocab_size)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        from lm_eval.models.utils_hf import stop_sequences_criteria

        kwargs = {k: v for k, v in generation_kwargs.items() if k not in TASK_SAMPLING_KEYS}
        kwargs.update(self.preset.generate_kwargs())
        kwargs.pop("max_new_tokens", None)
        stopping = stop_sequences_criteria(self.tokenizer, stop, context.shape[1], context.shape[0])
        out = self.model.generate(input_ids=context, max_length=max_length, stopping_criteria=stopping,
                                  pad_token_id=self.tokenizer.pad_token_id, use_cache=True, **kwargs)
        self.generated_tokens += int((out[:, context.shape[1]:] != self.tokenizer.pad_token_id).sum())
        return out
