"""What eager steering hooks cost where host dispatch dominates, as ratios in the same run.

A decoding step of eager Hugging Face ``generate`` on a GPU at small and medium batch is bound by
the host: every aten op is a kernel launch, and a steering hook adds its Python dispatch to
each hooked block. A many-layer, narrow random-init model on one CPU thread is bound the same
way, so the ratios here are an upper bound on the hooks' share of a GPU step (there the block's
own ops cost more host time each, which makes the hook's share smaller).

Timings are the main thread's CPU time (``time.thread_time``, one intra-op thread), not wall
time, so other processes on a shared machine do not move them; each figure is the minimum over
alternating (plain, steered) rounds.

1. ``generation``: steered/unsteered throughput of ``generate`` (16 prompt + 32 new tokens) at
   batch 1, 16, 128 for one middle layer, all layers, per-row strengths (all layers) and
   ``positions="generated"`` (all layers), and the host time each steered block call adds.
2. ``per_call_us``: the pieces of one steered block call: the add itself, an empty module call,
   a module call through a no-op forward hook (``torch.nn.Module``'s hook machinery), and the
   steered block call as ``steering`` makes it, all on a decoding step's ``[B, 1, d]``.

Usage: python benchmarks/bench_hooks.py [--layers 28] [--hidden 64] [--rounds 5] [--tiny]
Run it on two trees (``PYTHONPATH=old/src`` and ``PYTHONPATH=src``) to compare before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import random_model_of, train_tokenizer

from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel, wrap_model
from linsteer.steer.hooks import Steer, steering


def cpu_time(fn: Callable[[], Any]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def per_call(fns: dict[str, Callable[[], Any]], n: int, rounds: int) -> dict[str, float]:
    """Microseconds per call, the minimum over ``rounds`` alternating rounds of ``n`` calls."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.thread_time()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.thread_time() - start) / n * 1e6)
    return {k: round(v, 3) for k, v in best.items()}


def vector(lm: LoadedModel) -> SteeringVector:
    gen = torch.Generator().manual_seed(0)
    layers = range(lm.n_layers)
    return SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in layers},
                          {L: 1.0 for L in layers}, {})


def generation(lm: LoadedModel, batches: tuple[int, ...], prompt: int, new: int,
               rounds: int) -> dict[str, Any]:
    vec, n, mid = vector(lm), lm.n_layers, lm.n_layers // 2
    every = tuple(range(n))
    out: dict[str, Any] = {"prompt_tokens": prompt, "new_tokens": new, "unsteered_tok_s_cpu": {}}
    for batch in batches:
        ids = torch.randint(4, 200, (batch, prompt), generator=torch.Generator().manual_seed(batch))
        rows = tuple(float(x) for x in torch.linspace(-2.0, 2.0, batch))
        variants = {"one_layer": Steer(vec, (mid,), "add", 2.0),
                    "all_layers": Steer(vec, every, "add", 2.0),
                    "per_row_strengths": Steer(vec, every, "add", rows),
                    "positions_generated": Steer(vec, every, "add", 2.0, positions="generated")}

        def go(ids: torch.Tensor = ids) -> None:
            with torch.inference_mode():
                lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),  # type: ignore[operator]
                                  max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                  pad_token_id=0)

        def steered(spec: Steer) -> float:
            with steering(lm, spec):
                return cpu_time(go)

        go()
        plain = float("inf")
        times = {name: float("inf") for name in variants}
        for i in range(rounds):
            for name, spec in (variants.items() if i % 2 == 0 else reversed(variants.items())):
                plain = min(plain, cpu_time(go))
                times[name] = min(times[name], steered(spec))
        out["unsteered_tok_s_cpu"][str(batch)] = round(batch * new / plain, 1)
        for name, spec in variants.items():
            calls = new * len(spec.layers)  # block calls steered: prefill + (new - 1) steps
            out.setdefault(name, {})[str(batch)] = round(plain / times[name], 3)
            out.setdefault(f"{name}_us_per_block_call", {})[str(batch)] = round(
                (times[name] - plain) / calls * 1e6, 2)
    return out


def ident_forward(x: torch.Tensor) -> torch.Tensor:
    return x


def pieces(lm: LoadedModel, batch: int, n: int, rounds: int) -> dict[str, float]:
    """The host cost of one steered block call, split into its parts."""
    vec, d = vector(lm), lm.hidden_size
    hidden = torch.randn(batch, 1, d)
    delta = torch.randn(1, 1, d)
    plain = torch.nn.Identity()
    hooked = torch.nn.Identity()
    hooked.register_forward_hook(lambda m, a, out: out)
    with torch.inference_mode(), steering(lm, Steer(vec, (1,), "add", 2.0)) as handle:
        # the real block needs rotary inputs; an identity module carries the same steering
        ident = torch.nn.Identity()
        steer = getattr(handle, "steer_output", {}).get(1)
        if steer is not None:  # steering inside the wrapped forward (this tree)
            ident.forward = lambda x: steer(ident_forward(x))  # type: ignore[method-assign]
        else:  # a tree from before: steering as a block forward hook
            ident.register_forward_hook(getattr(handle, "_block_hook")(1))  # noqa: B009 (old tree)
        fns: dict[str, Callable[[], Any]] = {
            "add": lambda: hidden + delta,
            "module_call": lambda: plain(hidden),
            "module_call_through_noop_forward_hook": lambda: hooked(hidden),
            "steered_module_call": lambda: ident(hidden),
        }
        got = per_call(fns, n, rounds)
    got["hook_machinery"] = round(got["module_call_through_noop_forward_hook"] - got["module_call"], 3)
    got["steering_beyond_add"] = round(got["steered_module_call"] - got["module_call"] - got["add"], 3)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long check of the script")
    args = parser.parse_args()
    torch.set_num_threads(1)  # every op on the timed thread
    layers, batches, new = (args.layers, (1, 16, 128), 32) if not args.tiny else (4, (1, 2), 4)
    tok = train_tokenizer(["steering hooks cost host time"] * 4, 2048, merges_vocab=300)
    model = random_model_of({"arch": "qwen2", "vocab_size": 2048, "hidden_size": args.hidden,
                             "intermediate_size": 2 * args.hidden, "num_hidden_layers": layers,
                             "num_attention_heads": 4, "num_key_value_heads": 2,
                             "tie_word_embeddings": True, "max_position_embeddings": 4096},
                            "cpu", torch.float32)
    lm = wrap_model(model, tok, name=f"random-qwen2-{layers}x{args.hidden}")
    result = {"model": lm.name, "torch": torch.__version__, "threads": 1,
              "generation": generation(lm, batches, 16, new, args.rounds if not args.tiny else 1),
              "per_call_us": pieces(lm, 1, 2000 if not args.tiny else 50, 7 if not args.tiny else 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
