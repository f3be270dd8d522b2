"""Where results live, what a finished combination looks like, and how resume decides.

Layout (the contract between the runner and the leaderboard)::

    <output-dir>/<model>/<adapter|base>/
        results_<timestamp>.json        lm-eval's aggregated results (+ "benchmark" provenance)
        samples_<task>_<timestamp>.jsonl  lm-eval's per-sample logs
        done.json                        written last: the input hash and sha256 of every file
        failed.json                      instead of done.json when the combination failed
        lm_cache/                        this combination's lm-eval request cache

A combination counts as complete only if ``done.json`` parses, its input hash
equals the current one, and every file it lists has the recorded checksum. A
truncated or edited results file is therefore detected and recomputed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
LIBRARIES = ("torch", "transformers", "peft", "lm_eval", "bitsandbytes", "trl", "datasets", "sacrebleu", "spacy")


class ResultsError(RuntimeError):
    pass


def library_versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info(device) -> dict:
    """The hardware a combination ran on. Greedy answers of the same model can differ between machines (the CPU's
    SIMD kernels, or the GPU, round differently), so a score is reported with where it was computed."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "os": platform.platform()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# What an adapter folder holds to document itself, not to compute: the training card that
# training/card.py writes and benchmark.compare fills in with scores. Hashing them would make
# writing a run's scores into the card invalidate that very run.
CARD_FILES = frozenset({"README.md", "loss_curve.png", "training_stats.json"})


def hash_paths(paths, exclude: frozenset = frozenset()) -> str:
    """One hash over files (path + content), folders walked in sorted order; ``exclude``: file names to skip."""
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = [root] if root.is_file() else sorted(q for q in root.rglob("*") if q.is_file()
                                                     and "__pycache__" not in q.parts and q.name != "done.json"
                                                     and q.name not in exclude)
        for f in files:
            digest.update(str(f.name).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def adapter_hash(folder) -> str:
    """Hash of what an adapter computes with (config, weights, tokenizer, chat template), card excluded."""
    return hash_paths([folder], exclude=CARD_FILES)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)   # mkstemp makes it 0600: results and the page are for everyone to read
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def combo_dir(output_dir: Path, model: str, adapter: str | None) -> Path:
    return Path(output_dir) / model / (adapter or "base")


def is_complete(folder: Path, input_hash: str) -> tuple[bool, str]:
    """(complete?, reason) for a combination folder."""
    done = folder / "done.json"
    if not done.exists():
        return False, "not run"
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "done.json unreadable"
    if record.get("input_hash") != input_hash:
        return False, "inputs changed"
    for name, digest in record.get("files", {}).items():
        f = folder / name
        if not f.is_file() or sha256_bytes(f.read_bytes()) != digest:
            return False, f"{name} missing or corrupted"
    return True, "complete"


def mark_done(folder: Path, input_hash: str, files: list[Path], summary: dict) -> None:
    record = {"schema": SCHEMA_VERSION, "input_hash": input_hash,
              "files": {f.name: sha256_bytes(f.read_bytes()) for f in files}, "summary": summary}
    (folder / "failed.json").unlink(missing_ok=True)
    atomic_write(folder / "done.json", json.dumps(record, indent=1))


def mark_failed(folder: Path, input_hash: str, error: str) -> None:
    (folder / "done.json").unlink(missing_ok=True)
    atomic_write(folder / "failed.json", json.dumps({"input_hash": input_hash, "error": error}, indent=1))


class RunLock:
    """An exclusive lock on an output folder: a second run_all there refuses to start."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / ".run_all.lock"
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise ResultsError(f"{self.path.parent} is in use by another run_all ({holder}); wait for it to "
                               "finish or choose another --output-dir") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def check_writable(output_dir: Path) -> None:
    """Fail before any work when results cannot be written."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(output_dir / ".write-test", b"x" * 65536)
        (output_dir / ".write-test").unlink()
    except OSError as exc:
        raise ResultsError(f"results folder {output_dir} is not writable ({exc.strerror}); fix its permissions, "
                           "free space, or choose another --output-dir") from None


def load_results(folder: Path) -> dict | None:
    """The newest lm-eval results file of a complete combination folder."""
    files = sorted(Path(folder).glob("results_*.json"))
    if not files:
        return None
    return json.loads(files[-1].read_text(encoding="utf-8"))
