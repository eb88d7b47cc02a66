"""Each phase's time of a reduced ``linsteer run --preset paper`` and the full preset extrapolated.

Reads the run's log (the ``[i/n] task/split: N items x C conditions in S s`` lines and the
extraction line) and the run's config; scales each sweep phase by items x conditions (and, for
generation tasks, by the new-token budget: an upper bound, since the prompt's prefill does not
grow) and extraction by prompts. The first generation phase also compiles the decoding step on
a GPU: its excess over the last generation phase's steady rate is counted once, not scaled.
Prints one JSON (``generation_path``: compiled or eager, and why) and a one-line summary on stderr.

Usage: python scripts/paper_phases.py RUN_DIR LOG [LOAD_AND_BUILD_SECONDS]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
import yaml


def main() -> None:
    run_dir, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    from linsteer.run.config import PRESETS

    full = PRESETS["paper"]
    phases: list[dict[str, object]] = []
    m = re.search(r"extract: (\d+) prompts \((\d+) tokens\).* in ([\d.]+)s", log)
    if m:
        n, seconds = int(m.group(1)), float(m.group(3))
        phases.append({"phase": "extraction", "prompts": n, "tokens": int(m.group(2)), "seconds": seconds,
                       "full_estimate_s": round(seconds * 2 * full.n_per_class / n, 1)})
    layers_strengths = None
    for m in re.finditer(r"\[\d+/\d+\] (\S+?)/(dev|test): (\d+) items x (\d+) conditions in ([\d.]+)s", log):
        task, split, seconds = m.group(1), m.group(2), float(m.group(5))
        items, conds = int(m.group(3)), int(m.group(4))
        layers_strengths = layers_strengths or (2 * len(cfg["strengths"]) * len(cfg["operators"]))
        vectors = (conds - 1) // layers_strengths
        full_conds = 1 + layers_strengths * (vectors - cfg["n_null"] + full.n_null)
        full_items = full.n_dev if split == "dev" else full.n_test
        scale = (full_items / items) * (full_conds / conds)
        generative = task.startswith("gsm8k") or task.endswith("_gen")
        if generative:
            scale *= full.max_new_tokens / cfg["max_new_tokens"]
        phases.append({"phase": f"{task}/{split}", "items": items, "conditions": conds, "seconds": seconds,
                       "full_items": full_items, "full_conditions": full_conds,
                       "full_estimate_s": round(seconds * scale, 1), "generative": generative})
    # generation: the first generative phase also compiles the decoding step (once per run and
    # shape); scale the others' steady rate, and count that first phase's excess once, unscaled
    gen = [p for p in phases if p.get("generative")]
    if len(gen) > 1:
        last = gen[-1]
        rate = float(last["seconds"]) / (int(last["items"]) * int(last["conditions"]))  # type: ignore[arg-type]
        first = gen[0]
        seconds = float(first["seconds"])  # type: ignore[arg-type]
        expected = min(seconds, rate * int(first["items"]) * int(first["conditions"]))  # type: ignore[arg-type]
        warmup = seconds - expected
        first["compile_and_warmup_s"] = round(warmup, 1)
        first["full_estimate_s"] = round(float(first["full_estimate_s"]) * expected  # type: ignore[arg-type]
                                          / max(seconds, 1e-9) + warmup, 1)
    for p in phases:
        p.pop("generative", None)
    m = re.search(r"\] neutral text: (\d+) conditions in ([\d.]+)s", log)
    if m:
        phases.append({"phase": "neutral", "conditions": int(m.group(1)), "seconds": float(m.group(2))})
    store = run_dir / "results.sqlite"
    if store.is_file():
        import sqlite3

        with sqlite3.connect(store) as db:
            stored = dict(db.execute("SELECT name, seconds FROM phases").fetchall())
        if "load" in stored:
            phases.insert(0, {"phase": "load", "seconds": round(float(stored["load"]), 2)})
    total = re.search(r"total ([\d.]+)s", log)
    notice = re.search(r"compiled generation unavailable \(([^)]*)\)", log)
    path = (f"eager ({notice.group(1)})" if notice else
            "compiled (static cache, CUDA graphs)" if torch.cuda.is_available() else "eager (no CUDA)")
    out = {"run_dir": str(run_dir), "config": cfg, "generation_path": path, "phases": phases,
           "total_s": float(total.group(1)) if total else None,
           "full_estimate_s": round(sum(float(p.get("full_estimate_s", p["seconds"])) for p in phases), 1)}  # type: ignore[arg-type]
    out["full_estimate_h"] = round(float(out["full_estimate_s"]) / 3600, 2)  # type: ignore[arg-type]
    if len(sys.argv) > 3:
        out["model_folder_build_s"] = float(sys.argv[3])
    print(json.dumps(out, indent=1))
    print(f"paper preset: {len(phases)} phases measured, generation {path}; full preset extrapolated "
          f"to {out['full_estimate_s']} s ({out['full_estimate_h']} h)", file=sys.stderr)


if __name__ == "__main__":
    main()
