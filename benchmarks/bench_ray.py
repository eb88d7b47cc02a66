"""Sweeps on Ray: 2 workers vs 1, and the per-worker overhead, against a single-process sweep of
the same groups measured in the same run.

Per-worker overhead = starting the worker process and loading the model (paid once per worker),
plus the extra time of a 1-worker Ray sweep over the single-process sweep (listing the groups, moving
results back, the driver's writes). The speed-up of 2 workers over 1 is bounded by the number of
groups (task splits) and by the cores: on a 2-core machine both workers share 2 cores with torch's
own threads, so expect far less than 2x here; one worker per GPU is the intended layout.

Usage: python benchmarks/bench_ray.py [--model smollm2-135m-instruct] [--n-test 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from linsteer.extract.contrast import vector_from_contrast
from linsteer.extract.controls import build_controls
from linsteer.model.load import load_model
from linsteer.prompts.spec import contrast_from_spec
from linsteer.run.ray import init_ray, run_sweep_ray
from linsteer.sweep.run import SweepSpec, run_sweep
from linsteer.sweep.store import ResultStore
from linsteer.sweep.tasks import TaskSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n-test", type=int, default=16, help="test items per task (dev: half)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()

    import os

    import torch

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # Ray workers inherit it
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lm = load_model(args.model, dtype="fp32", device="cpu")
    load_single = time.perf_counter() - start
    contrast = contrast_from_spec("builtin", 8, 0)
    acts, vector = vector_from_contrast(lm, contrast, contrast_name="builtin", progress=False)
    controls = build_controls(acts, vector, positive=contrast.positive, negative=contrast.negative,
                              n_null=1)
    layers = (lm.n_layers // 3, lm.n_layers // 2)
    spec = SweepSpec(layers=layers, strengths=(0.5, 2.0),
                     tasks=(TaskSpec("arith_mc", "reasoning", n_dev=args.n_test // 2, n_test=args.n_test),
                            TaskSpec("facts_mc", "memorization", n_dev=args.n_test // 2,
                                     n_test=args.n_test)),
                     neutral_texts=4)
    tmp = Path(tempfile.mkdtemp())
    with ResultStore(tmp / "single.sqlite") as store:
        start = time.perf_counter()
        run_sweep(lm, controls, spec, store)
        single = time.perf_counter() - start
        reference = store.dump()
    init_ray(None, num_cpus=2)
    rows = []
    for workers in (1, 2):
        with ResultStore(tmp / f"ray{workers}.sqlite") as store:
            report = run_sweep_ray(args.model, controls, spec, store, dtype="fp32", device="cpu",
                                   workers=workers)
            same = store.dump() == reference
        rows.append((workers, report.seconds, max(report.load_seconds), same, report.compute_seconds))
    print(f"model {args.model}: {len(controls)} directions x {len(layers)} layers x 2 strengths, "
          f"{report.groups} groups; single process {single:.1f}s (+{load_single:.1f}s model load)")
    for workers, seconds, load, same, compute in rows:
        print(f"ray {workers} worker(s): {seconds:.1f}s wall, of which groups computing {compute:.1f}s "
              f"(summed over workers), slowest worker start+load {load:.1f}s; results identical to "
              f"single process: {same}")
    one, two = rows[0][1], rows[1][1]
    print(f"overhead of the 1-worker ray sweep (wall - compute): {rows[0][1] - rows[0][4]:.1f}s, "
          f"ratio to the single-process sweep: {one / single:.2f}x")
    print(f"speed-up 2 workers vs 1: {one / two:.2f}x")


if __name__ == "__main__":
    main()
