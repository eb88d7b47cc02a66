"""How long a run will take on this machine, said before any work: its arithmetic counted from the
config and the items, over this machine's measured matmul speed.

The count follows what the stages run (:mod:`linsteer.run.stages`): extraction; the layer scan
(each scanned direction calibrated at every layer, then scored); the sweep's calibration, its
conditions on every task split and on neutral text; the alternatives (prompts on dev and test,
LoRA training and scoring at each learning rate; generated answers at ``max_new_tokens`` each
on a generative task). A forward costs ``2 x block parameters`` per
token through the blocks it runs (a replayed condition at layer ``L`` runs the blocks above
``L`` only) plus ``2 x hidden x vocabulary`` per position the LM head scores; training costs
three forwards. The sweep's layer is not known before the scan: the estimate takes the middle of
the stack. The machine's speed is a matmul of the model's width in the model's dtype (a tenth of
a second), and ``EFFICIENCY`` is the share of it a run achieves, per dtype, measured on the
default run (README: "What the default run costs"): a bf16 matmul is fast enough that the
non-matmul work (norms, hooks, sampling the head's blocks) costs a larger share of the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from linsteer.model.head import output_head
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import PromptFormat, get_format
from linsteer.prompts.instructions import INSTRUCTIONS, instructed
from linsteer.prompts.worked import fewshot_format
from linsteer.run.config import RunConfig, sweep_spec
from linsteer.run.gen_alternatives import LORA_SEED_OFFSET, sft_pairs
from linsteer.score.mc import MCRow, mc_rows
from linsteer.score.neutral import neutral_texts
from linsteer.sweep.run import flops_per_token
from linsteer.sweep.tasks import TaskSpec, alternatives_task

BUDGET_S = 600.0  # the default run's budget on 2 CPU cores
# Achieved model FLOP/s over the matmul's, measured on cold default runs of Gemma 3 270M on 2 Zen 5
# cores (2026-12-04): fp32 under AVX2 0.71-0.84 (442 s), bf16 on AVX512-BF16 0.54-0.57 (194 s);
# rounded down so that the estimate errs long. Other dtypes take the lower figure.
EFFICIENCY = {"float32": 0.7, "bfloat16": 0.5}
DEFAULT_EFFICIENCY = 0.5
OVERHEAD_S = 30.0  # loading, the confound probes, figures and the report
CALIBRATION_PASSES = 8  # the sweep's KL search per direction and sign: a 3-point grid, then 2 rounds
SCAN_CALIBRATION_PASSES = 5  # the scan's: a 3-point grid and 2 rounds, one budget
LORA_BATCH = 4


@dataclass(frozen=True)
class Estimate:
    """Expected wall time: ``seconds`` where the sweep's layers are known, else the range from
    steering at the last layer (``seconds``) to the first (``seconds_hi``)."""

    seconds: float
    seconds_hi: float
    gflops: float  # the machine's measured matmul speed in the model's dtype
    dtype: str
    what: str = "the run"

    def line(self, budget_s: float | None = BUDGET_S) -> str:
        lo, hi = self.seconds / 60, self.seconds_hi / 60
        span = (f"about {lo:.0f} min" if hi - lo < 1
                else f"{lo:.0f} to {hi:.0f} min (by the layer the scan picks)")
        text = (f"estimate: {self.what} takes {span} on this machine (a {self.dtype} matmul here: "
                f"{self.gflops:.0f} GFLOP/s)")
        if budget_s is not None and self.seconds > budget_s:
            text += (f"; over the default run's {budget_s / 60:.0f}-minute budget: fewer test items "
                     "(--n-test), null directions (--n-null) or alternatives (baselines: []) make it "
                     "shorter")
        return text


def matmul_gflops(lm: LoadedModel, repeats: int = 5) -> float:
    """This machine's speed on a matmul of the model's width in its dtype (best of ``repeats``)."""
    d = lm.hidden_size
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, d, generator=gen).to(lm.dtype).to(lm.device)
    b = torch.randn(d, 8 * d, generator=gen).to(lm.dtype).to(lm.device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * 512 * d * 8 * d / best / 1e9


def _scored(row: MCRow) -> int:
    """Positions the head scores in one row: the last prompt token and every node with children."""
    return 1 + len({p for p in row.parents if p >= 0})


@dataclass(frozen=True)
class _Costs:
    per_token: float  # the blocks, per token
    per_head: float  # the LM head, per scored position
    n_layers: int

    def tail(self, layer: int) -> float:
        """The share of the blocks a replayed condition at ``layer`` runs."""
        return (self.n_layers - 1 - layer) / self.n_layers

    def pass_flops(self, tokens: int, scored: int, conditions: int, share: float) -> float:
        """The unsteered pass, then ``conditions`` replayed at a layer running ``share`` of the blocks."""
        return (tokens * self.per_token + scored * self.per_head
                + conditions * (tokens * self.per_token * share + scored * self.per_head))


def _mc_counts(lm: LoadedModel, task: TaskSpec, split: str, fmt: PromptFormat | None = None,
               shots: int = 0) -> tuple[int, int]:
    items = replace(task, shots=shots).items(split)
    rows = mc_rows(lm, items, fmt if fmt is not None else task.prompt_format, tree=True)
    return sum(len(r.ids) for r in rows), sum(_scored(r) for r in rows)


def _gen_counts(lm: LoadedModel, task: TaskSpec, split: str, fmt: PromptFormat | None = None
                ) -> tuple[int, int]:
    items = task.gen_items(split)
    prompts = [(fmt or get_format(task.prompt_format)).render_item(it) for it in items]
    tokens = sum(len(t) for t in lm.tokenizer(prompts)["input_ids"])
    generated = len(items) * task.max_new_tokens
    return tokens + generated, generated


def run_flops(config: RunConfig, lm: LoadedModel, *, steered_layers: tuple[int, ...] | None = None,
              scan: bool = True) -> float:
    """The model arithmetic of a run with ``config`` on ``lm`` (see the module docstring):
    ``steered_layers`` where the sweep's layers are known (the scan's choice), ``scan`` False to
    leave the scan out (done already)."""
    costs = _Costs(flops_per_token(lm), 2.0 * lm.hidden_size * _vocab(lm), lm.n_layers)
    spec = sweep_spec(config, lm.n_layers)
    neutral = [len(t) for t in lm.tokenizer(neutral_texts(config.neutral_texts))["input_ids"]]
    total = 2 * config.n_per_class * 60 * costs.per_token  # extraction: prompts of about 60 tokens
    kinds = 1 + config.n_null + 3 + len(config.extra_methods)  # real, nulls, shuffled, negated, isotropic
    reasoning = next((t for t in spec.tasks if t.role == "reasoning" and not t.generative), None)
    scanning = config.layers is None and config.scan_top > 0 and reasoning is not None
    if scan and scanning and reasoning is not None:
        scan_task = replace(reasoning, n_dev=min(reasoning.n_dev, config.scan_items))
        tokens, scored = _mc_counts(lm, scan_task, "dev")
        texts = sum(neutral[:2])
        dirs = 1 + min(2, config.n_null)
        for layer in range(lm.n_layers):
            share = costs.tail(layer)
            total += dirs * len(config.scan_strengths) * (
                tokens * costs.per_token * share + scored * costs.per_head
                + SCAN_CALIBRATION_PASSES * texts * (costs.per_token * share + costs.per_head))
        total += tokens * costs.per_token + scored * costs.per_head
    layers = list(steered_layers or config.layers or ())
    if not layers:
        layers = [lm.n_layers // 2] * config.scan_top if scanning else list(spec.layers)
    share = sum(costs.tail(x) for x in layers) / len(layers)
    conditions = kinds * len(spec.strengths) * len(layers) * len(spec.operators)
    if config.unit in ("kl", "ppl"):
        half = sum(neutral[: max(2, len(neutral) // 2)])
        passes = kinds * len(layers) * len(spec.operators) * CALIBRATION_PASSES * 2
        total += passes * half * (costs.per_token * share + costs.per_head)
    total += costs.pass_flops(sum(neutral), sum(neutral), conditions, share)
    for task in spec.tasks:
        for split in ("dev", "test"):
            tokens, scored = _gen_counts(lm, task, split) if task.generative else _mc_counts(lm, task, split)
            total += costs.pass_flops(tokens, scored, conditions, share)
    alternatives = alternatives_task(spec.tasks) if config.baselines else None
    if alternatives is not None and alternatives.generative:
        total += _gen_alternatives_flops(config, lm, alternatives, costs, share)
    elif alternatives is not None:
        total += _alternatives_flops(config, lm, alternatives, costs, share)
    return total


def _gen_alternatives_flops(config: RunConfig, lm: LoadedModel, task: TaskSpec, costs: _Costs,
                            share: float) -> float:
    """The generative alternatives (:mod:`linsteer.run.gen_alternatives`): each prompt's answers on
    dev and test (steered on top on test), LoRA on worked solutions at each rate."""
    total = 0.0
    fmts: list[PromptFormat] = []
    if "prompt" in config.baselines:
        fmts += [instructed(task.prompt_format, name) for name in INSTRUCTIONS]
    if "fewshot" in config.baselines:
        fmts.append(fewshot_format(task.prompt_format, task.train_gen_items(config.fewshot_k, config.seed)))
    for fmt in fmts:
        total += (costs.pass_flops(*_gen_counts(lm, task, "dev", fmt), 0, share)
                  + costs.pass_flops(*_gen_counts(lm, task, "test", fmt), 1, share))
    if "lora" in config.baselines:
        items = task.train_gen_items(config.n_per_class, config.seed + LORA_SEED_OFFSET)
        prompts, answers = sft_pairs(task, items)
        example = sum(len(t) for t in lm.tokenizer([p + a for p, a in zip(prompts, answers, strict=True)])[
            "input_ids"]) / max(1, len(items))
        answer = sum(len(t) for t in lm.tokenizer(answers)["input_ids"]) / max(1, len(items))
        steps = config.lora_steps * LORA_BATCH
        per_lr = 3 * steps * (example * costs.per_token + answer * costs.per_head)
        dev, test = _gen_counts(lm, task, "dev"), _gen_counts(lm, task, "test")
        total += len(config.lora_lrs) * (per_lr + costs.pass_flops(*dev, 0, share))
        total += costs.pass_flops(*test, 0, share)
    return total


def _alternatives_flops(config: RunConfig, lm: LoadedModel, task: TaskSpec, costs: _Costs,
                        share: float) -> float:
    total = 0.0
    prompts: list[tuple[PromptFormat | None, int]] = []
    if "prompt" in config.baselines:
        prompts += [(instructed(task.prompt_format, name), 0) for name in INSTRUCTIONS]
    if "fewshot" in config.baselines:
        prompts.append((None, config.fewshot_k))
    for fmt, shots in prompts:
        dev = _mc_counts(lm, task, "dev", fmt, shots)
        test = _mc_counts(lm, task, "test", fmt, shots)
        total += costs.pass_flops(*dev, 0, share) + costs.pass_flops(*test, 1, share)
    if "lora" in config.baselines:
        dev = _mc_counts(lm, task, "dev")
        test = _mc_counts(lm, task, "test")
        example = dev[0] / max(1, task.n_dev)  # tokens of one training example
        train = config.lora_steps * LORA_BATCH * example
        per_lr = 3 * train * costs.per_token + 3 * config.lora_steps * LORA_BATCH * costs.per_head
        total += len(config.lora_lrs) * (per_lr + costs.pass_flops(*dev, 0, share))
        total += costs.pass_flops(*test, 0, share)
    return total


def _vocab(lm: LoadedModel) -> int:
    weight = getattr(output_head(lm.model), "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    return int(getattr(getattr(lm.model, "config", None), "vocab_size", 0) or 0)


def estimate_run(config: RunConfig, lm: LoadedModel, steered_layers: tuple[int, ...] | None = None
                 ) -> Estimate:
    """The run's expected wall time on this machine (see the module docstring); with
    ``steered_layers`` (the scan's choice) the time of what is left after the scan."""
    gflops = matmul_gflops(lm)
    efficiency = EFFICIENCY.get(str(lm.dtype).replace("torch.", ""), DEFAULT_EFFICIENCY)

    def seconds(flops: float) -> float:
        return flops / (gflops * 1e9 * efficiency) + OVERHEAD_S

    if steered_layers is not None:
        left = seconds(run_flops(config, lm, steered_layers=steered_layers, scan=False))
        return Estimate(left, left, gflops, str(lm.dtype).replace("torch.", ""), "the rest of the run")
    if config.layers is None and config.scan_top > 0:
        last, first = (lm.n_layers - 1,) * config.scan_top, (0,) * config.scan_top
        return Estimate(seconds(run_flops(config, lm, steered_layers=last)),
                        seconds(run_flops(config, lm, steered_layers=first)), gflops,
                        str(lm.dtype).replace("torch.", ""))
    both = seconds(run_flops(config, lm))
    return Estimate(both, both, gflops, str(lm.dtype).replace("torch.", ""))
