"""Task discovery and the fixed stratified sample: which lm-eval tasks a run scores, on which documents.

Every folder of task YAMLs under ``tasks/`` (and each ``--include-path``) is indexed by lm-eval's
TaskManager; a YAML that does not parse is named with its line, not silently dropped. The default
sample takes the same documents every run, spread over each task's strata (law, category, ...).
"""

from __future__ import annotations

import logging
import os
import random
from collections import defaultdict
from pathlib import Path

from benchmark.registry import REPO

TASKS_DIR = REPO / "tasks"
STRATA_FIELDS = ("ley", "categoria", "conocimiento", "tipo")
log = logging.getLogger("benchmark")


def load_task_module(path: Path, name: str | None = None):
    """Import a task folder's ``utils.py`` (or any file) by path, as lm-eval's ``!function`` does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name or f"task_{Path(path).parent.name}_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task_dirs(include_paths=()) -> list[Path]:
    """tasks/ and the --include-path folders, absolute."""
    dirs = [TASKS_DIR]
    for d in include_paths:
        d = Path(d).expanduser().resolve()
        if not d.is_dir():
            raise ValueError(f"--include-path {d}: not a folder")
        if d not in dirs:
            dirs.append(d)
    return dirs


def task_manager(names=None, dirs=(TASKS_DIR,)):
    """Our tasks only, or ours plus lm-eval's when a requested name is not ours."""
    from lm_eval.tasks import TaskManager

    paths = [str(d) for d in dirs]
    ours = TaskManager(include_path=paths, include_defaults=False)
    if names and any(n not in ours.all_tasks for n in names):
        return TaskManager(include_path=paths)
    return ours


def check_task_yamls(dirs) -> dict[Path, str]:
    """{file: error} for every task YAML (and the file it includes) that cannot be read safely.

    lm-eval skips a YAML it cannot parse without a word, so the task just goes missing;
    here it is named with the line of the error.
    """
    from benchmark.yamlio import YamlError, load_yaml

    bad = {}
    for root in dirs:
        for path in sorted(Path(root).rglob("*.yaml")):
            if "__pycache__" in path.parts:
                continue
            try:
                cfg = load_yaml(path, "task YAML", functions=True)
                base = cfg.get("include") if isinstance(cfg, dict) else None
                if isinstance(base, str) and not Path(base).is_absolute():
                    load_yaml(path.parent / base, f"file included by {path.name}", functions=True)
            except YamlError as exc:
                bad[path.resolve()] = str(exc)
    return bad


def own_root_tasks(tm, dirs=(TASKS_DIR,), refused=()) -> list[str]:
    """Top-level groups and ungrouped tasks defined by YAML files in ``dirs`` (tags are skipped)."""
    prefixes = tuple(str(d) + os.sep for d in dirs)
    mine = {name: entry for name, entry in tm.task_index.items()
            if entry.yaml_path is not None and str(entry.yaml_path).startswith(prefixes)
            and Path(entry.yaml_path).resolve() not in refused}
    children = set()
    for entry in mine.values():
        if entry.cfg and "group" in entry.cfg:
            children |= {t if isinstance(t, str) else t.get("task") for t in entry.cfg.get("task", [])}
    # Tasks reachable through a tag (e.g. per-category breakdowns) are opt-in, not part of the default run.
    tagged = {n for n, e in mine.items() if e.cfg and e.cfg.get("tag") and "group" not in e.cfg}
    roots = sorted(n for n in mine if n not in children and n not in tagged)
    if not roots:
        raise ValueError(f"no lm-eval tasks found under {', '.join(map(str, dirs))}")
    return roots


def resolve_tasks(names, dirs):
    """(task manager, task names to run, their leaf tasks, problems).

    A task YAML that does not parse, or a task name that does not exist, is a
    problem reported by name; the other tasks still run.
    """
    from lm_eval.tasks import get_task_dict

    refused = check_task_yamls(dirs)
    problems = []
    tm = task_manager(names, dirs)
    if names:
        wanted = []
        for name in dict.fromkeys(names):
            entry = tm.task_index.get(name)
            if entry is None:
                hint = (" (a task YAML above is refused: is it that one?)" if refused
                        else "; check the name (`lm_eval --tasks list`)")
                problems.append(f"unknown task '{name}': not under {', '.join(map(str, dirs))} nor in lm-eval{hint}")
            elif entry.yaml_path is not None and Path(entry.yaml_path).resolve() in refused:
                problems.append(f"task '{name}' is defined in {entry.yaml_path}, which is refused (see above)")
            else:
                wanted.append(name)
        if problems:   # an unknown name may be the task of a refused file
            problems = list(refused.values()) + problems
        else:          # not one of the requested tasks: say so, but it does not fail this run
            for error in refused.values():
                log.warning("warning: %s", error)
    else:
        problems = list(refused.values())   # its task would silently be missing from the run
        wanted = own_root_tasks(tm, dirs, refused)
    try:
        kept, leaves = wanted, leaf_tasks(get_task_dict(wanted, tm)) if wanted else {}
    except Exception:  # find which task cannot be built, keep the others
        kept, leaves = [], {}
        for name in wanted:
            try:
                leaves.update(leaf_tasks(get_task_dict([name], tm)))
                kept.append(name)
            except Exception as exc:
                problems.append(f"task '{name}' cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}")
    if not kept:
        raise ValueError("no task left to run:\n  " + "\n  ".join(problems))
    return tm, kept, leaves, problems


def task_source_files(tm, names) -> list[Path]:
    """Every file in the folders that hold these tasks' YAMLs (data, utils.py, README): the resume hash covers them.

    Only the folders of the tasks being run, so editing another task does not invalidate these results.
    Stock lm-eval tasks are covered by the lm-eval version in the hash.
    """
    folders = {Path(tm.task_index[n].yaml_path).resolve().parent for n in names
               if n in tm.task_index and tm.task_index[n].yaml_path is not None
               and "/lm_eval/tasks/" not in str(tm.task_index[n].yaml_path)}
    return sorted({p for d in folders for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts})


def leaf_tasks(task_dict) -> dict:
    out = {}
    for key, value in task_dict.items():
        if isinstance(value, dict):
            out.update(leaf_tasks(value))
        else:
            out[getattr(key, "group_name", key) if not isinstance(key, str) else key] = value
    return out


def stratified_sample(docs, n: int, seed: int = 0) -> list[int]:
    """n document indices spread over the strata (law, category, ...), the same every run."""
    if n <= 0 or n >= len(docs):
        return list(range(len(docs)))
    strata = defaultdict(list)
    for i, doc in enumerate(docs):
        key = tuple(str(doc.get(f)) for f in STRATA_FIELDS if isinstance(doc, dict) and f in doc)
        if not key and isinstance(doc, dict) and doc.get("instruction_id_list"):
            key = (doc["instruction_id_list"][0].split(":")[1],)
        strata[key].append(i)
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(strata.items())]
    picked = []
    while len(picked) < n:
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return sorted(picked)
