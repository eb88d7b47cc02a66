"""Core speed, as ratios measured in the same run on a real model.

1. Activation reading (hooks, early stop, no logits) vs a naive ``output_hidden_states=True``
   forward over the same batches (which computes every block and the full LM head), and vs the
   bare decoder body over the same batches (the floor: every block, nothing read).
2. Steered vs unsteered greedy generation throughput (the hooks' overhead).

Usage: python benchmarks/bench_core.py [--model gemma3-270m] [--prompts 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from linsteer.extract.read import batches_by_length, left_pad, read_activations, tokenize
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel, load_model
from linsteer.prompts.formats import get_format
from linsteer.prompts.spec import contrast_from_spec
from linsteer.steer.hooks import Steer, steering

# per-vector relative error two correct forwards over the same tokens may show, by dtype
REL_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_read(lm: LoadedModel, prompts: list[str], batch_size: int) -> torch.Tensor:
    """What one would write without linsteer: every hidden state, and logits, for every batch."""
    ids = tokenize(lm, prompts)
    pad = int(lm.tokenizer.pad_token_id)
    out = torch.zeros(len(prompts), lm.n_layers, lm.hidden_size)
    for rows in batches_by_length([len(t) for t in ids], batch_size, exact=False):
        batch = left_pad([ids[i] for i in rows], pad)
        with torch.inference_mode():
            hs = lm.model(**batch.model_kwargs(lm), output_hidden_states=True).hidden_states
        out[rows] = torch.stack([h[:, -1].float() for h in hs[1:]], dim=1)
    return out


def bare_body(lm: LoadedModel, prompts: list[str], batch_size: int) -> None:
    """The decoder body alone (no LM head, nothing read) over the same batches: the floor."""
    ids = tokenize(lm, prompts)
    pad = int(lm.tokenizer.pad_token_id)
    body = lm.model.model  # type: ignore[union-attr]
    for rows in batches_by_length([len(t) for t in ids], batch_size, exact=False):
        batch = left_pad([ids[i] for i in rows], pad)
        with torch.inference_mode():
            body(**batch.model_kwargs(lm), use_cache=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    lm = load_model(args.model, dtype=args.dtype)
    fmt = get_format("zero_shot")
    contrast = contrast_from_spec("builtin", args.prompts // 2)
    prompts = [fmt.render(item.text) for item in contrast.items]
    print(f"model {args.model} ({lm.dtype}, {lm.n_layers} layers, d={lm.hidden_size}), "
          f"{len(prompts)} prompts, {torch.get_num_threads()} threads")

    gen_prompts = prompts[:8]
    enc = lm.tokenizer(gen_prompts, return_tensors="pt", padding=True)  # type: ignore[operator]
    gen = torch.Generator().manual_seed(0)
    vec = SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in range(lm.n_layers)},
                         {L: 1.0 for L in range(lm.n_layers)}, {})
    layer = lm.n_layers // 2

    def generate() -> None:
        with torch.inference_mode():
            lm.model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                              do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)  # type: ignore[attr-defined]

    def steered() -> None:
        with steering(lm, Steer(vec, (layer,), "add", 0.5, positions="all")):
            generate()

    generate()
    plain_times, steer_times = [], []
    for i in range(args.repeats):  # interleaved (ABBA), so drift hits both alike
        order = (generate, steered) if i % 2 == 0 else (steered, generate)
        for fn in order:
            (plain_times if fn is generate else steer_times).append(best_of(fn, 1))
    tokens = len(gen_prompts) * args.new_tokens
    t_plain, t_steer = statistics.median(plain_times), statistics.median(steer_times)
    print(f"generation: unsteered {tokens / t_plain:.1f} tok/s, steered {tokens / t_steer:.1f} tok/s, "
          f"throughput ratio steered/unsteered {t_plain / t_steer:.3f}")

    naive_read(lm, prompts[:4], 4)  # warm-up
    t_read = best_of(lambda: read_activations(lm, prompts, batch_size=args.batch_size,
                                              progress=False), args.repeats)
    t_naive = best_of(lambda: naive_read(lm, prompts, args.batch_size), args.repeats)
    t_body = best_of(lambda: bare_body(lm, prompts, args.batch_size), args.repeats)
    mine = read_activations(lm, prompts, batch_size=args.batch_size, progress=False).acts
    ref = naive_read(lm, prompts, args.batch_size)
    # the last layer differs by design (hidden_states[-1] is after the final norm); the two read
    # the same tokens through different attention kernels (no mask without padding), so they agree
    # to the model dtype's rounding: compare per-vector relative error against a dtype tolerance
    err = ((mine[:, :-1] - ref[:, :-1]).norm(dim=-1) / ref[:, :-1].norm(dim=-1).clamp(min=1e-12)).max()
    tol = REL_TOL.get(lm.dtype, 1e-4)
    dtype = str(lm.dtype).replace("torch.", "")
    print(f"read activations: linsteer {t_read:.2f}s, naive output_hidden_states {t_naive:.2f}s, "
          f"ratio {t_naive / t_read:.2f}x (same values in {dtype}: {bool(err <= tol)}, "
          f"max relative error {float(err):.1e}, tolerance {tol:.0e})")
    print(f"read activations vs the bare decoder body (same batches, tokenising included): "
          f"{t_body / t_read:.3f}x")


if __name__ == "__main__":
    main()
