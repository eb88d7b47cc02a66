"""The tasks a sweep evaluates: built-in multiple choice and generation, or benchmark files.

Benchmark tasks are ``name=PATH``: ``gsm8k``, ``mgsm``, ``gsm_symbolic`` (generation, the final
number read by the generation format's rule) and ``mmlu_pro_cot`` (the seed's k-shot MMLU-Pro CoT
on the reasoning items, :mod:`linsteer.prompts.seed_mmlu`: generation, the letter read with
``answer is \\(?([A-J])\\)?``, an unreadable answer wrong). A task with its own prompt format
(:data:`OWN_FORMATS`) is rendered in it whatever ``gen_format`` says.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.prompts.benchmarks import load_benchmark
from linsteer.prompts.builtin_tasks import builtin_task
from linsteer.prompts.generators import arithmetic_problems
from linsteer.prompts.items import GenItem, MCItem
from linsteer.prompts.seed_formats import SEED_MMLU_PRO_COT
from linsteer.prompts.seed_mmlu import mmlu_pro_cot_items

GEN_TASKS = ("arith_gen",)
# as "name=PATH", all answered by generation: the final number, or (mmlu_pro_cot) the letter
BENCHMARK_TASKS = ("gsm8k", "mgsm", "gsm_symbolic", "mmlu_pro_cot")
OWN_FORMATS = {"mmlu_pro_cot": SEED_MMLU_PRO_COT}  # tasks whose items carry their prompt
BUILTIN_ROLES = {"arith_mc": "reasoning", "facts_mc": "memorization", "arith_gen": "reasoning"}


def benchmark_of(name: str) -> tuple[str, str] | None:
    """``("gsm8k", PATH)`` for a benchmark task ``gsm8k=PATH``; None for a built-in task."""
    kind, sep, path = name.partition("=")
    return (kind, path) if sep and kind in BENCHMARK_TASKS and path else None


def own_format(name: str) -> str | None:
    """The prompt format a task always uses (``mmlu_pro_cot=PATH``: the seed's), else None."""
    bench = benchmark_of(name)
    return OWN_FORMATS.get(bench[0]) if bench else None


def is_generative(name: str) -> bool:
    """Whether a task is answered by generation (``arith_gen`` and every benchmark file) rather
    than scored by option log-likelihood."""
    return name in GEN_TASKS or benchmark_of(name) is not None


def train_file(name: str) -> Path | None:
    """The train file of a benchmark task ``gsm8k=PATH`` (the solved items few-shot and LoRA draw
    from): beside PATH, ``test`` replaced by ``train`` in its name (``.../test.jsonl`` ->
    ``.../train.jsonl``; a folder: its ``train.jsonl``). None when there is no such file, and for
    MGSM (test items only) and built-in tasks."""
    bench = benchmark_of(name)
    if bench is None or bench[0] == "mgsm":
        return None
    path = Path(bench[1])
    found = path / "train.jsonl" if path.is_dir() else path.with_name(path.name.replace("test", "train"))
    return found if found != path and found.is_file() else None


def task_role(name: str) -> str:
    """reasoning / memorization for a task name: a built-in task or ``gsm8k=PATH`` etc."""
    if name in BUILTIN_ROLES:
        return BUILTIN_ROLES[name]
    if benchmark_of(name) is not None:
        return "reasoning"
    known = ", ".join([*BUILTIN_ROLES, *(f"{b}=PATH" for b in BENCHMARK_TASKS)])
    raise LinsteerError(f"unknown task {name!r}; use {known}")


@dataclass(frozen=True)
class TaskSpec:
    """A task evaluated on a dev and a test split: multiple choice (``arith_mc``, ``facts_mc``,
    scored by log-likelihood) or free generation (``arith_gen``: short arithmetic word problems
    answered by greedy generation, the final number extracted; a benchmark file ``name=PATH``).
    ``shots``: few-shot examples per item (``mmlu_pro_cot``: exemplars per category);
    ``exclude``: item ids held apart (``mmlu_pro_cot``: the run's contrast prompts)."""

    name: str  # arith_mc | facts_mc | arith_gen | gsm8k=PATH | ... | mmlu_pro_cot=PATH
    role: str  # reasoning | memorization
    n_dev: int = 32
    n_test: int = 64
    shots: int = 0
    prompt_format: str = "mc_text"
    seed: int = 0
    max_new_tokens: int = 24
    exclude: frozenset[str] = frozenset()

    @property
    def generative(self) -> bool:
        return is_generative(self.name)

    def key(self) -> dict[str, Any]:
        """The task's identity in a store's group key: its fields, the held-apart ids as one digest
        (left out when there are none, so other tasks' keys are what they always were)."""
        out = asdict(self)
        held = out.pop("exclude")
        if held:
            out["exclude_sha256"] = hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()
        return out

    def items(self, split: str) -> list[MCItem]:
        n = self.n_dev if split == "dev" else self.n_test
        return builtin_task(self.name, split=split, n=n, seed=self.seed, shots=self.shots)

    def gen_items(self, split: str) -> list[GenItem]:
        """Built-in problems, or a benchmark file's test set split in two: even rows are dev, odd
        rows test (deterministic and disjoint; ``mmlu_pro_cot``: of its reasoning items in a seeded
        order, each with its category's exemplars held apart)."""
        n = self.n_dev if split == "dev" else self.n_test
        if self.name == "arith_gen":
            return arithmetic_problems(n, steps=(1, 2), seed=self.seed,
                                       pool="dev" if split == "dev" else "test")
        kind, _, path = self.name.partition("=")
        if kind == "mmlu_pro_cot":
            return mmlu_pro_cot_items(path, split, n_dev=self.n_dev, n_test=self.n_test,
                                      shots=self.shots, seed=self.seed, exclude=self.exclude)
        items = load_benchmark(kind, path, split="test")
        return [item for item in items[(0 if split == "dev" else 1)::2] if isinstance(item, GenItem)][:n]

    def train_pool(self) -> list[GenItem] | None:
        """Every solved item of a benchmark task's train file (:func:`train_file`), in file order;
        None for the built-in problems (their train pool is drawn, :meth:`train_gen_items`)."""
        if self.name == "arith_gen":
            return None
        path = train_file(self.name)
        if path is None:
            raise LinsteerError(f"{self.name.partition('=')[0]}: no train file beside "
                                f"{self.name.partition('=')[2]} (its name with test -> train); few-shot "
                                "and LoRA need solved train items: put the train file there or drop "
                                "fewshot and lora from baselines")
        items = load_benchmark(self.name.partition("=")[0], path, split="train")
        return [item for item in items if isinstance(item, GenItem)]

    def train_gen_items(self, n: int, seed: int) -> list[GenItem]:
        """``n`` solved train items (disjoint from dev and test), drawn with ``seed``: the built-in
        problems' ``train`` pool, or a sample of the benchmark's train file."""
        if self.name == "arith_gen":
            return arithmetic_problems(n, steps=(1, 2), seed=seed, pool="train")
        pool = self.train_pool() or []
        if n > len(pool):
            raise LinsteerError(f"{self.name.partition('=')[0]}: asked for {n} train items but the "
                                f"train file has {len(pool)}; lower fewshot_k / n_per_class")
        return random.Random(f"train|{seed}").sample(pool, n)


def alternatives_task(tasks: Sequence[TaskSpec]) -> TaskSpec | None:
    """The task a run's alternatives to steering are scored on: its first reasoning task (the
    headline's), multiple choice (``arith_mc``) or generation (``arith_gen``, ``gsm8k=PATH``, ...);
    a task whose items carry their own prompt (``mmlu_pro_cot=PATH``) is not one (no prompt or
    exemplars of ours go into it); None without one."""
    return next((t for t in tasks if t.role == "reasoning" and own_format(t.name) is None
                 and (t.generative or t.name == "arith_mc")), None)
