"""Sweep speed: 16 steering configurations scored in one replayed pass vs one after another.

Both sides use the same steering (hooks for the sequential side, the shared-prefix replay for the
sweep) on the same multiple-choice items; the sweep also shares each item's prompt across its
options (prefix tree). The sweep runs with the engine chosen for this device (``auto``: the
replay on a CPU, conditions as batch rows on a GPU), and each engine is also timed explicitly.
Printed as ratios measured in the same run, plus the maximum difference in
option log-likelihood between the two (they must agree).

Usage: python benchmarks/bench_sweep.py [--model gemma3-270m] [--items 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from linsteer.extract.vector import SteeringVector
from linsteer.model.load import load_model
from linsteer.score.mc import score_mc
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting
from linsteer.sweep.tasks import TaskSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    lm = load_model(args.model, dtype=args.dtype)
    items = TaskSpec("arith_mc", "reasoning").items("test")[: args.items]
    gen = torch.Generator().manual_seed(0)
    vec = SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in range(lm.n_layers)},
                         {L: 1000.0 for L in range(lm.n_layers)}, {})
    layers = (lm.n_layers // 3, lm.n_layers // 2)
    settings = [Setting(vec, layer, "add", s, "norm") for layer in layers
                for s in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)]
    print(f"model {args.model} ({lm.dtype}), {len(items)} arith_mc items, {len(settings)} "
          f"configurations at layers {layers}, {torch.get_num_threads()} threads")
    auto = Replayer(lm)
    runs = {
        f"sweep (auto engine: {auto.chosen_engine()}, prefix tree)": {"tree": True, "replayer": auto},
        "replay engine, prefix tree": {"tree": True, "replayer": Replayer(lm, engine="replay")},
        "rows engine, prefix tree": {"tree": True, "replayer": Replayer(lm, engine="rows")},
        "one by one, prefix tree": {"tree": True, "replayer": Replayer(lm, engine="full")},
        "one by one, one row per option": {"tree": False, "replayer": Replayer(lm, engine="full")},
    }
    times, scores = {}, {}
    for name, kwargs in runs.items():
        start = time.perf_counter()
        _, per, _ = score_mc(lm, items, settings, **kwargs)  # type: ignore[arg-type]
        times[name] = time.perf_counter() - start
        scores[name] = per
        print(f"  {name}: {times[name]:.1f}s", flush=True)
    ref = scores["one by one, one row per option"]
    name = next(iter(runs))

    def diff(key: str) -> float:
        return max(abs(a - b) for pa, pb in zip(scores[key], ref, strict=True)
                   for x, y in zip(pa, pb, strict=True)
                   for a, b in zip(x.sum_logprobs, y.sum_logprobs, strict=True))

    fast = times[name]
    print(f"ratio vs one by one (same prefix-tree rows): {times['one by one, prefix tree'] / fast:.2f}x")
    naive = times["one by one, one row per option"]
    print(f"ratio vs one by one (one row per option):    {naive / fast:.2f}x")
    for key in ("replay engine, prefix tree", "rows engine, prefix tree"):
        print(f"{key} vs one by one (same rows): {times['one by one, prefix tree'] / times[key]:.2f}x")
    print(f"max |log-likelihood difference|: {diff(name):.2e} "
          f"(replay {diff('replay engine, prefix tree'):.2e}, rows {diff('rows engine, prefix tree'):.2e})")


if __name__ == "__main__":
    main()
