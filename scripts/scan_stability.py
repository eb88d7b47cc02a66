"""How stable the layer scan's choice is as its dev items grow: one scan of ``--items`` dev items
with a finished run's direction and controls, then its choice and bootstrap agreement on disjoint
blocks of 16, 32, 64 ... items and on all of them.

Usage: python scripts/scan_stability.py RUN_DIR [--items 128] [--out scan.json]
(RUN_DIR: a finished ``linsteer run``; its config gives the model, task and scan budget.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import load_model
from linsteer.run.config import make_config, sweep_spec
from linsteer.run.stages import sweep_controls
from linsteer.sweep.layerscan import scan_layers, scan_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cfg = replace(make_config("quick", args.run_dir / "config.yaml"), n_dev=args.items)
    acts = ActivationSet.load(args.run_dir / "acts.safetensors")  # read only: the run is untouched
    vector = SteeringVector.load(args.run_dir / "vector.safetensors")
    lm = load_model(cfg.model, dtype=cfg.dtype)
    spec = sweep_spec(cfg, lm.n_layers)
    task = scan_task(spec.tasks)
    assert task is not None, "the run has no multiple-choice reasoning task to scan"
    start = time.perf_counter()
    scan = scan_layers(lm, sweep_controls(cfg, acts, vector), task, strengths=cfg.scan_strengths,
                       unit=spec.unit, top=1, batch_size=spec.batch_size, n_items=args.items)
    print(f"scan of {scan.n_items} dev items in {time.perf_counter() - start:.0f}s ({lm.name})")
    if args.out:
        args.out.write_text(json.dumps(scan.to_json()))
    size = 16
    while size <= scan.n_items:
        blocks = [scan.subset(i, i + size) for i in range(0, scan.n_items - size + 1, size)]
        print(f"{size:4d} items: " + "; ".join(
            f"layer {b.chosen[0]} ({100 * (b.agreement() or 0):.0f}%)" for b in blocks))
        size *= 2
    if scan.n_items != size // 2:
        print(f"{scan.n_items:4d} items: layer {scan.chosen[0]} ({100 * (scan.agreement() or 0):.0f}%)")


if __name__ == "__main__":
    main()
