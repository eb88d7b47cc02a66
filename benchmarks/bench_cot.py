"""The chain-of-thought engine against today's generation path, in the same run.

8 GSM8K test items x 3 conditions (unsteered, and ``add`` of one random unit direction at the
middle layer at two strengths, 0.01 and 0.02 of that layer's median residual norm on the first
prompt: 0.05 already leaves every answer unreadable) on Gemma 3 270M with the seed's 8-shot GSM8K
format, 200 new tokens at most, through :func:`linsteer.score.generated.score_gen`:

* ``engine="cot"``: the shared 8-shot prefix once per condition, rows stopped when the seed's
  ``The final answer is N`` is complete (or at the next ``Q:``) and their slots refilled;
* ``engine="full"``: today's path, full prompts through ``generate`` (a batch runs until its
  longest row stops), with the same stop and reading rule, so both read the same answers.

FLOPs (the engine's): 2 x block parameters x tokens through the blocks (prefix once per
condition, suffixes, the prefix tokens a shorter suffix re-runs, generated tokens) + 2 x LM-head
parameters x rows whose logits were taken (one per forward row); attention scores are not
counted. The matmul reference: a 2048^3 matmul in the model's dtype, best of 3, before and after.
Prints ``cot engine: ratio R x vs one condition at a time, same answers: ..., tokens A vs B, F%
of matmul`` (R = old seconds / new seconds; A, B = mean generated tokens, new and old).

Float32 by default (the engine's tokens equal the full prompts' exactly in float32; in bfloat16
the two paths' rounding differs and a few greedy answers can too).

Usage: nice python benchmarks/bench_cot.py [--data ../shared/data/gsm8k/test.jsonl] [--items 8]
       [--dtype float32] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import linsteer as ls
from linsteer.extract.vector import SteeringVector
from linsteer.generate.cot import CotStats
from linsteer.prompts.benchmarks import load_gsm8k
from linsteer.prompts.formats import get_format
from linsteer.score.generated import GenScores, score_gen
from linsteer.steer.setting import Setting

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def matmul_flops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--strengths", default="0.01,0.02", help="add strengths, x the layer's norm")
    parser.add_argument("--dtype", default="float32", help="float32: both paths give the same tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = ls.load_model(args.model, dtype=args.dtype)
    dtype = next(lm.model.parameters()).dtype
    items = load_gsm8k(args.data, limit=args.items)
    layer = lm.n_layers // 2
    prompt = get_format("seed_gsm8k_8shot").render_item(items[0])
    with torch.inference_mode():
        ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
        hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0]
    norm = float(hidden.float().norm(dim=-1).median())
    direction = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    vector = SteeringVector({layer: direction}, {layer: norm}, {"random": 1}, {"model": lm.name})
    settings = [Setting(vector, layer, "add", float(s), "norm") for s in args.strengths.split(",")]
    kwargs = {"prompt_format": "seed_gsm8k_8shot", "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens}
    flops_ref = matmul_flops(dtype)

    stats = CotStats()
    start = time.perf_counter()
    def show(done: int, total: int) -> None:
        print(f"cot: {done}/{total} answers after {time.perf_counter() - start:.0f}s", flush=True)

    new: GenScores = score_gen(lm, items, settings, engine="cot", stats=stats, compiled=False,
                               progress=show, **kwargs)  # type: ignore[arg-type]
    t_new = time.perf_counter() - start
    start = time.perf_counter()
    old: GenScores = score_gen(lm, items, settings, engine="full", compiled=False, **kwargs)  # type: ignore[arg-type]
    t_old = time.perf_counter() - start
    flops_ref = max(flops_ref, matmul_flops(dtype))

    block = sum(p.numel() for p in lm.blocks.modules.parameters())
    head = lm.model.get_output_embeddings().weight.numel()
    flops = 2.0 * block * stats.tokens_processed + 2.0 * head * stats.logit_rows
    answers = [[r.prediction for r in rows] for rows in (new.base, *new.per_setting)]
    same = answers == [[r.prediction for r in rows] for rows in (old.base, *old.per_setting)]
    mean_new = sum(new.mean_tokens) / len(new.mean_tokens)
    mean_old = sum(old.mean_tokens) / len(old.mean_tokens)
    for name, res in (("cot", new), ("full", old)):
        acc = [sum(r.correct for r in rows) / len(rows) for rows in (res.base, *res.per_setting)]
        print(f"{name}: accuracy {acc}, unreadable {res.unreadable}, mean tokens {res.mean_tokens}")
    print(f"model {lm.name} ({dtype}), {len(items)} items x {1 + len(settings)} conditions, threads "
          f"{torch.get_num_threads()}: cot {t_new:.1f}s, full {t_old:.1f}s; prefix tokens "
          f"{stats.prefix_tokens}, tokens through the blocks {stats.tokens_processed}, logit rows "
          f"{stats.logit_rows}, forwards {stats.forwards}; engine {flops / t_new / 1e9:.1f} GFLOP/s, "
          f"matmul {flops_ref / 1e9:.1f} GFLOP/s")
    print(f"cot engine: ratio {t_old / t_new:.1f} x vs one condition at a time, same answers: {same}, "
          f"tokens {mean_new:.1f} vs {mean_old:.1f}, {100 * flops / t_new / flops_ref:.0f}% of matmul")


if __name__ == "__main__":
    main()
