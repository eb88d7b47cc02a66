"""Layer × strength sweeps with controls, side effects and a crash-proof results store.

A sweep evaluates, on each task split, the unsteered baseline and every (direction kind, seed,
layer, operator, strength) condition. Multiple-choice items are scored by log-likelihood (the
options' summed log-probabilities given the prompt). All conditions of a task split run through
:class:`linsteer.replay.Replayer`: each batch is run once unsteered and only the blocks above each
steered layer are re-run per condition, batched. Each task split (and the neutral-text side
effects) is committed to the SQLite store as one unit, so a killed run resumes where it stopped
with identical results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from linsteer.activations import Batch, left_pad, tokenize
from linsteer.answers import extract_number
from linsteer.controls import Control
from linsteer.directions import check_compatible
from linsteer.errors import LinsteerError
from linsteer.layers import check_layers, is_recurrent
from linsteer.models import LoadedModel
from linsteer.prompts.benchmarks import load_benchmark
from linsteer.prompts.formats import get_format
from linsteer.prompts.generators import arithmetic_problems
from linsteer.prompts.items import GenItem, MCItem
from linsteer.prompts.tasks import builtin_task
from linsteer.replay import Replayer, Setting
from linsteer.scoring import ChoiceScores, generate_answers, score_choices, score_generation
from linsteer.steering import OPERATORS, Steer, SteeringHandle, steering
from linsteer.store import CellKey, ItemRow, NeutralRow, ResultStore

Progress = Callable[[str], None]


GEN_TASKS = ("arith_gen",)
BENCHMARK_TASKS = ("gsm8k", "mgsm", "gsm_symbolic")  # as "name=PATH": generation, final number
BUILTIN_ROLES = {"arith_mc": "reasoning", "facts_mc": "memorization", "arith_gen": "reasoning"}


def task_role(name: str) -> str:
    """reasoning / memorization for a task name: a built-in task or ``gsm8k=PATH`` etc."""
    if name in BUILTIN_ROLES:
        return BUILTIN_ROLES[name]
    kind, _, path = name.partition("=")
    if kind in BENCHMARK_TASKS and path:
        return "reasoning"
    known = ", ".join([*BUILTIN_ROLES, *(f"{b}=PATH" for b in BENCHMARK_TASKS)])
    raise LinsteerError(f"unknown task {name!r}; use {known}")


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task evaluated on a dev and a test split: multiple choice (``arith_mc``,
    ``facts_mc``, scored by log-likelihood) or free generation (``arith_gen``: short arithmetic
    word problems answered by greedy generation, the final number extracted)."""

    name: str  # arith_mc | facts_mc | arith_gen
    role: str  # reasoning | memorization
    n_dev: int = 32
    n_test: int = 64
    shots: int = 0
    prompt_format: str = "mc_text"
    seed: int = 0
    max_new_tokens: int = 24

    @property
    def generative(self) -> bool:
        return self.name in GEN_TASKS or "=" in self.name

    def items(self, split: str) -> list[MCItem]:
        n = self.n_dev if split == "dev" else self.n_test
        return builtin_task(self.name, split=split, n=n, seed=self.seed, shots=self.shots)

    def gen_items(self, split: str) -> list[GenItem]:
        """Built-in problems, or a benchmark file's test set split in two: even rows are dev, odd
        rows test (deterministic and disjoint)."""
        n = self.n_dev if split == "dev" else self.n_test
        if self.name == "arith_gen":
            return arithmetic_problems(n, steps=(1, 2), seed=self.seed,
                                       pool="dev" if split == "dev" else "test")
        kind, _, path = self.name.partition("=")
        items = load_benchmark(kind, path, split="test")
        return [item for item in items[(0 if split == "dev" else 1)::2] if isinstance(item, GenItem)][:n]


@dataclass(frozen=True)
class SweepSpec:
    layers: tuple[int, ...]
    strengths: tuple[float, ...]
    operators: tuple[str, ...] = ("add",)
    unit: str = "norm"
    tasks: tuple[TaskSpec, ...] = (TaskSpec("arith_mc", "reasoning"), TaskSpec("facts_mc", "memorization"))
    neutral_texts: int = 8
    batch_size: int = 16
    max_rows: int = 128

    def __post_init__(self) -> None:
        for op in self.operators:
            if op not in OPERATORS:
                raise LinsteerError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
        if self.unit not in ("raw", "norm", "ppl"):
            raise LinsteerError(f"unknown strength unit {self.unit!r}; use raw, norm or ppl")
        if self.unit == "ppl" and any(s <= 0 for s in self.strengths):
            raise LinsteerError("with unit ppl, strengths are perplexity budgets such as 0.05,0.1,0.25")
        if not self.strengths or not self.layers:
            raise LinsteerError("a sweep needs at least one layer and one strength")


@dataclass(frozen=True)
class Condition:
    kind: str
    seed: int
    layer: int
    operator: str
    strength: float
    unit: str
    vector: Any = field(compare=False, hash=False, repr=False)
    raw: float | None = None  # calibrated raw strength (unit "ppl": ``strength`` is the budget)
    source: str = ""

    def setting(self) -> Setting:
        if self.raw is not None:
            return Setting(self.vector, self.layer, self.operator, self.raw, "raw")
        return Setting(self.vector, self.layer, self.operator, self.strength, self.unit)


def conditions(spec: SweepSpec, controls: Sequence[Control],
               calibrated: dict[tuple[int, int, str, float], float] | None = None) -> list[Condition]:
    """Every (layer, operator, strength, direction); with unit ``ppl``, ``calibrated`` maps
    (control index, layer, operator, budget) to the raw strength reaching that budget."""
    return [
        Condition(c.kind, c.seed, layer, op, s, spec.unit, c.vector,
                  None if calibrated is None else calibrated[(i, layer, op, s)], c.source)
        for layer in spec.layers for op in spec.operators for s in spec.strengths
        for i, c in enumerate(controls)
    ]


def calibrated_strengths(lm: LoadedModel, controls: Sequence[Control], spec: SweepSpec,
                         store: ResultStore) -> dict[tuple[int, int, str, float], float]:
    """Per direction, layer and operator, the raw strength raising neutral perplexity by each
    budget in ``spec.strengths`` (stored in the run, so a resumed run reuses it)."""
    from linsteer.calibrate import Target, calibrate

    saved = store.get_meta("calibration")
    if saved is not None:
        return {(int(i), int(layer), op, float(b)): v
                for (i, layer, op, b), v in json.loads(saved)}
    targets = [(i, layer, op) for i, _ in enumerate(controls) for layer in spec.layers
               for op in spec.operators]
    found = calibrate(lm, [Target(controls[i].vector, layer, op) for i, layer, op in targets],
                      spec.strengths, neutral_texts(spec.neutral_texts or 8))
    out = {(*targets[t], b): c.strength for (t, b), c in found.items()}
    store.set_meta("calibration", json.dumps([[list(k), v] for k, v in out.items()]))
    return out


# ---- multiple choice rows -----------------------------------------------------------------

@dataclass
class MCRow:
    """One sequence to score: a prompt followed by its options' tokens as a prefix tree.

    Each option is a path of trie nodes; a node attends to the prompt and its own ancestors only
    and sits at position ``prompt_len + depth``, so every option is scored exactly as if it
    followed the prompt alone, while the prompt and shared option prefixes (" 1", " 13" of
    " 131" / " 132") are computed once. Without ``tree`` each option gets its own row (a chain).
    """

    item: int
    ids: list[int]
    prompt_len: int
    parents: list[int]  # parent node of each node (-1: the prompt)
    depths: list[int]
    options: list[tuple[int, list[int]]]  # (option index, its path of nodes)


def _tree_ok(lm: LoadedModel, width: int) -> bool:
    """Options may share one row where the model takes a 4D mask and no sliding window bites."""
    if is_recurrent(lm.model):
        return False
    config = getattr(lm.model, "config", None)
    window = getattr(config, "sliding_window", None)
    return not (isinstance(window, int) and width > window)


def _trie_row(item: int, prompt: list[int], options: list[tuple[int, list[int]]]) -> MCRow:
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    children: dict[tuple[int, int], int] = {}
    paths: list[tuple[int, list[int]]] = []
    for j, toks in options:
        node, path = -1, []
        for depth, tok in enumerate(toks):
            key = (node, tok)
            if key not in children:
                children[key] = len(tokens)
                tokens.append(tok)
                parents.append(node)
                depths.append(depth)
            node = children[key]
            path.append(node)
        paths.append((j, path))
    return MCRow(item, prompt + tokens, len(prompt), parents, depths, paths)


def mc_rows(lm: LoadedModel, items: Sequence[MCItem], prompt_format: str, tree: bool) -> list[MCRow]:
    fmt = get_format(prompt_format)
    prompt_ids = tokenize(lm, [fmt.render_item(item) for item in items])
    rows: list[MCRow] = []
    for i, item in enumerate(items):
        conts = fmt.continuations(item.options)
        enc = lm.tokenizer(conts, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        options = [(j, list(cont)) for j, cont in enumerate(enc)]
        if any(not toks for _, toks in options):
            raise LinsteerError(f"item {item.id}: an option tokenises to nothing")
        if tree and _tree_ok(lm, len(prompt_ids[i]) + sum(len(t) for _, t in options)):
            rows.append(_trie_row(i, prompt_ids[i], options))
        else:
            rows += [_trie_row(i, prompt_ids[i], [opt]) for opt in options]
    return rows


def mc_batch(rows: Sequence[MCRow], pad_id: int) -> Batch:
    """Left-padded batch; rows holding a prefix tree get tree positions and a 4D mask."""
    batch = left_pad([r.ids for r in rows], pad_id)
    if all(len(r.options) == 1 for r in rows):
        return batch
    width = batch.input_ids.shape[1]
    positions = torch.zeros_like(batch.input_ids)
    allowed = torch.zeros((len(rows), width, width), dtype=torch.bool)
    for b, r in enumerate(rows):
        start = width - len(r.ids)
        n = r.prompt_len
        positions[b, start: start + n] = torch.arange(n)
        allowed[b, start: start + n, start: start + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        for node, (parent, depth) in enumerate(zip(r.parents, r.depths, strict=True)):
            at = start + n + node
            positions[b, at] = n + depth
            allowed[b, at] = allowed[b, start + n + parent] if parent >= 0 else allowed[b, start + n - 1]
            allowed[b, at, at] = True
    allowed |= torch.eye(width, dtype=torch.bool)  # pads attend to themselves (no empty rows)
    batch.position_ids = positions
    batch.mask_4d = allowed.unsqueeze(1)
    return batch


def _slot_scorer(
    rows: Sequence[MCRow],
) -> tuple[int, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The logits window (last positions), which of its positions predict an option token, and a
    scorer giving each row's option log-likelihoods ``[rows, max options per row]`` from the
    logits of the selected positions (see :mod:`linsteer.replay`)."""
    n_last = max(len(r.ids) - r.prompt_len + 1 for r in rows)
    slots = max(len(r.options) for r in rows)
    select = torch.zeros((len(rows), n_last), dtype=torch.bool)
    entries: list[tuple[int, int, int, int]] = []  # (row, slot, window position, token)
    for b, r in enumerate(rows):
        first = n_last - (len(r.ids) - r.prompt_len + 1)  # window position of the last prompt token
        for s, (_, path) in enumerate(r.options):
            for node in path:
                parent = r.parents[node]
                pos = first if parent < 0 else first + 1 + parent
                select[b, pos] = True
                entries.append((b, s, pos, r.ids[r.prompt_len + node]))
    rank = torch.full((len(rows), n_last), -1, dtype=torch.long)
    rank[select] = torch.arange(int(select.sum()))
    idx = torch.tensor(entries, dtype=torch.long)
    flat = rank[idx[:, 0], idx[:, 2]]
    n_rows, n_sel = len(rows), int(select.sum())

    def score(logits: torch.Tensor) -> torch.Tensor:
        copies = logits.shape[0] // n_sel
        norm = torch.logsumexp(logits.float(), dim=-1)
        out = torch.zeros(copies * n_rows, slots)
        for c in range(copies):
            at = (flat + c * n_sel).to(logits.device)
            picked = logits[at, idx[:, 3].to(logits.device)].float() - norm[at]
            out.index_put_((idx[:, 0] + c * n_rows, idx[:, 1]), picked.cpu(), accumulate=True)
        return out

    return n_last, select, score


def _batches(rows: Sequence[MCRow], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i].ids), i))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def score_mc(
    lm: LoadedModel,
    items: Sequence[MCItem],
    settings: Sequence[Setting],
    *,
    prompt_format: str = "mc_text",
    batch_size: int = 16,
    replayer: Replayer | None = None,
    tree: bool = True,
    progress: str | None = None,
) -> tuple[list[ChoiceScores], list[list[ChoiceScores]], int]:
    """Option log-likelihoods of every item, unsteered and under each setting.

    With ``tree`` (default), an item's options share one row: one copy of the prompt, each option
    attending to the prompt and itself only, all options starting at the same position, so the
    prompt is computed once per item (exactly equal to one row per option, up to float error).
    Returns (baseline scores, scores per setting, tokens processed in the base passes).
    """
    rows = mc_rows(lm, items, prompt_format, tree)
    replayer = replayer or Replayer(lm)
    pad = int(lm.tokenizer.pad_token_id)  # type: ignore[attr-defined]
    sums: list[list[list[float]]] = [[[0.0] * len(item.options) for item in items]
                                     for _ in range(len(settings) + 1)]
    tokens = 0
    from tqdm.auto import tqdm

    for idx in tqdm(_batches(rows, batch_size), desc=progress, unit="batch", disable=progress is None,
                    leave=False):
        chunk = [rows[i] for i in idx]
        batch = mc_batch(chunk, pad)
        n_last, select, scorer = _slot_scorer(chunk)
        base, steered = replayer.run(batch, settings, n_last, scorer, select)
        for k, scores in enumerate([base, *steered]):
            for b, row in enumerate(chunk):
                for s, (j, _) in enumerate(row.options):
                    sums[k][row.item][j] = float(scores[b, s])
        tokens += int(batch.attention_mask.sum())

    lengths = [[0] * len(item.options) for item in items]
    for row in rows:
        for j, path in row.options:
            lengths[row.item][j] = len(path)

    def collect(per_item: list[list[float]]) -> list[ChoiceScores]:
        return [ChoiceScores(tuple(s), tuple(v / n for v, n in zip(s, lens, strict=True)), tuple(lens))
                for s, lens in zip(per_item, lengths, strict=True)]

    return collect(sums[0]), [collect(s) for s in sums[1:]], tokens


def score_gen(
    lm: LoadedModel,
    items: Sequence[GenItem],
    settings: Sequence[Setting],
    *,
    prompt_format: str = "zero_shot",
    batch_size: int = 16,
    max_new_tokens: int = 24,
    max_rows: int = 64,
) -> tuple[list[ItemRow], list[list[ItemRow]], int]:
    """Greedy answers of every item, unsteered and under each setting, scored by the final number.

    Settings of one layer and operator run together: each batch row carries its own vector and
    strength (the steering hooks' per-row mode), prompts replicated once per setting. An answer
    with no number is wrong and counted as a format failure (never guessed).
    """
    fmt = get_format(prompt_format)
    prompts = [fmt.render_item(item) for item in items]
    stops = ("\n",) if fmt.style == "qa" else ("\nQ:", "\n\n")

    def generate(rows: list[str], on_batch: Callable[[Sequence[int]], None] | None) -> list[ItemRow]:
        outs = generate_answers(lm.model, lm.tokenizer, rows, max_new_tokens=max_new_tokens,
                                stop_strings=stops, batch_size=batch_size, on_batch=on_batch)
        results, _ = score_generation(list(items) * (len(rows) // len(items)), outs, extract_number)
        return [ItemRow(r.item_id, r.prediction, r.gold, r.correct, r.extracted,
                        r.n_generated_tokens, None, None) for r in results]

    base = generate(prompts, None)
    per: list[list[ItemRow] | None] = [None] * len(settings)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault((s.layer, s.operator), []).append(i)
    per_pass = max(1, max_rows // len(items))
    for (layer, op), idxs in groups.items():
        for start in range(0, len(idxs), per_pass):
            chunk = idxs[start: start + per_pass]
            spec = Steer(settings[chunk[0]].vector, (layer,), op, 0.0)  # type: ignore[arg-type]
            with steering(lm, spec) as handle:
                def on_batch(rows: Sequence[int], chunk: list[int] = chunk,
                             handle: SteeringHandle = handle) -> None:
                    conds = [settings[chunk[r // len(items)]] for r in rows]
                    handle.reset()
                    handle.set_rows([c.raw_strength() for c in conds], [c.vector for c in conds])

                rows = generate(prompts * len(chunk), on_batch)
            for j, i in enumerate(chunk):
                per[i] = rows[j * len(items): (j + 1) * len(items)]
    tokens = sum(len(t) for t in tokenize(lm, prompts)) * (1 + len(settings))
    tokens += sum(r.n_tokens for r in base) + sum(r.n_tokens for rows in per if rows for r in rows)
    return base, [rows for rows in per if rows is not None], tokens


def item_rows(items: Sequence[MCItem], scores: Sequence[ChoiceScores]) -> list[ItemRow]:
    results = score_choices(items, scores, normalise=False)
    return [ItemRow(r.item_id, r.prediction, r.gold, r.correct, r.extracted, 0, r.gold_prob, r.margin)
            for r in results]


# ---- neutral text side effects ------------------------------------------------------------

def neutral_texts(n: int) -> list[str]:
    from importlib.resources import files

    data = json.loads(files("linsteer").joinpath("data/neutral.json").read_text())
    texts: list[str] = data["texts"]
    return texts[: max(1, n)]


@dataclass
class _NeutralScorer:
    """Per-row summed NLL and summed KL(unsteered ‖ steered) over the real predicted tokens."""

    ids: torch.Tensor
    mask: torch.Tensor
    base_logp: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        copies = logits.shape[0] // self.ids.shape[0]
        tgt = self.ids[:, 1:].repeat(copies, 1).to(logp.device)
        valid = (self.mask[:, 1:] * self.mask[:, :-1]).repeat(copies, 1).bool().to(logp.device)  # skip pads
        nll = -(logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * valid).sum(-1)
        if self.base_logp is None:
            self.base_logp = logp
            kl = torch.zeros_like(nll)
        else:
            base = self.base_logp.repeat(copies, 1, 1)
            kl = ((base.exp() * (base - logp)).sum(-1) * valid).sum(-1)
        return torch.stack([nll, kl], dim=-1).cpu()


def neutral_effects(
    lm: LoadedModel, settings: Sequence[Setting], texts: Sequence[str], batch_size: int = 4
) -> tuple[tuple[float, float], list[tuple[float, float]], int]:
    """(ppl, mean KL) unsteered and for each setting, over ``texts``; and the tokens counted."""
    ids = tokenize(lm, texts)
    pad = int(lm.tokenizer.pad_token_id)  # type: ignore[attr-defined]
    replayer = Replayer(lm, max_rows=8)
    base_tot = torch.zeros(2)
    tot = torch.zeros((len(settings), 2))
    count = 0
    for start in range(0, len(ids), batch_size):
        batch: Batch = left_pad(ids[start: start + batch_size], pad)
        width = batch.input_ids.shape[1]
        scorer = _NeutralScorer(batch.input_ids, batch.attention_mask)
        base, steered = replayer.run(batch, settings, width, scorer)
        base_tot += base.sum(0)
        for j, s in enumerate(steered):
            tot[j] += s.sum(0)
        count += int(((batch.attention_mask[:, 1:] * batch.attention_mask[:, :-1])).sum())

    def pk(v: torch.Tensor) -> tuple[float, float]:
        return float(torch.exp(v[0] / count)), float(v[1] / count)

    return pk(base_tot), [pk(tot[j]) for j in range(len(settings))], count


# ---- the sweep ----------------------------------------------------------------------------

def flops_per_token(lm: LoadedModel) -> float:
    """2 x block parameters: the forward FLOPs of one token through every block."""
    return 2.0 * sum(p.numel() for p in lm.blocks.modules.parameters())


def run_sweep(
    lm: LoadedModel,
    controls: Sequence[Control],
    spec: SweepSpec,
    store: ResultStore,
    *,
    progress: Progress | None = None,
    show_bars: bool = False,
) -> None:
    """Evaluate every condition on every task split and the neutral text, resuming from ``store``."""
    check_layers(list(spec.layers), lm.n_layers)
    for control in controls:
        check_compatible(control.vector, lm.hidden_size, lm.name)
    say = progress or (lambda _msg: None)
    calibrated = None
    if spec.unit == "ppl":
        say("calibrating strengths to perplexity budgets on neutral text ...")
        calibrated = calibrated_strengths(lm, controls, spec, store)
    conds = conditions(spec, controls, calibrated)
    settings = [c.setting() for c in conds]
    per_token = flops_per_token(lm)
    n_groups = 2 * len(spec.tasks) + (1 if spec.neutral_texts > 0 else 0)
    done = 0
    for task in spec.tasks:
        for split in ("dev", "test"):
            done += 1
            group = json.dumps({"model": lm.name, "task": asdict(task), "split": split})
            if store.has_group(group):
                say(f"[{done}/{n_groups}] {task.name}/{split}: already stored, skipped")
                continue
            start = time.perf_counter()
            if task.generative:
                gen_items = task.gen_items(split)
                base_rows, per_rows, tokens = score_gen(
                    lm, gen_items, settings, prompt_format=task.prompt_format,
                    batch_size=spec.batch_size, max_new_tokens=task.max_new_tokens,
                    max_rows=spec.max_rows)
                n_items = len(gen_items)
            else:
                items = task.items(split)
                base, per, tokens = score_mc(lm, items, settings, prompt_format=task.prompt_format,
                                             batch_size=spec.batch_size,
                                             replayer=Replayer(lm, max_rows=spec.max_rows),
                                             progress=f"{task.name}/{split}" if show_bars else None)
                base_rows, per_rows = item_rows(items, base), [item_rows(items, p) for p in per]
                n_items = len(items)
            cells = [(CellKey(lm.name, task.name, task.role, split, "baseline", 0, None, None, None,
                              spec.unit), base_rows)]
            for c, rows in zip(conds, per_rows, strict=True):
                cells.append((CellKey(lm.name, task.name, task.role, split, c.kind, c.seed, c.layer,
                                      c.operator, c.strength, c.unit, c.source), rows))
            seconds = time.perf_counter() - start
            total_tokens = tokens if task.generative else tokens * (1 + len(conds))
            store.write_group(group, cells, seconds=seconds, tokens=total_tokens,
                              flops=per_token * total_tokens)
            say(f"[{done}/{n_groups}] {task.name}/{split}: {n_items} items x "
                f"{len(conds) + 1} conditions in {seconds:.1f}s")
    if spec.neutral_texts > 0:
        group = json.dumps({"model": lm.name, "neutral": spec.neutral_texts})
        if store.has_group(group):
            say(f"[{n_groups}/{n_groups}] neutral text: already stored, skipped")
            return
        start = time.perf_counter()
        plain, effects, count = neutral_effects(lm, settings, neutral_texts(spec.neutral_texts))
        neutral = [NeutralRow(lm.name, "baseline", 0, None, None, None, spec.unit, plain[0], 0.0, count)]
        neutral += [NeutralRow(lm.name, c.kind, c.seed, c.layer, c.operator, c.strength, c.unit,
                               ppl, kl, count, c.source)
                    for c, (ppl, kl) in zip(conds, effects, strict=True)]
        seconds = time.perf_counter() - start
        store.write_group(group, [], neutral=neutral, seconds=seconds,
                          tokens=count * (1 + len(conds)), flops=per_token * count * (1 + len(conds)))
        say(f"[{n_groups}/{n_groups}] neutral text: {len(conds) + 1} conditions in {seconds:.1f}s")


def store_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "results.sqlite"
