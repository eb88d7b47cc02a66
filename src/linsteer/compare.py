"""Several models through the same protocol, then one comparison report.

Each model gets its own run directory (the full pipeline); the comparison adds the seed's table
(baseline, best steered on the test split with the layer chosen on dev, where it falls among the
null directions, the memorization change) and each model's reasoning activation profile on
relative depth, plus per-layer cosines between directions of models of the same width.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from linsteer.activations import ActivationSet
from linsteer.analysis import Profile, cross_model_cosine, profile, separability
from linsteer.directions import SteeringVector
from linsteer.headline import Headline
from linsteer.pipeline import Say, make_config, new_run_dir, run_all
from linsteer.plots import cross_model_cosine_plot, cross_model_plot
from linsteer.report import write_report


def _headline(run_dir: Path) -> dict[str, Any]:
    data = json.loads((run_dir / "results.json").read_text())
    summary = data["summary"]
    return summary[0] if isinstance(summary, list) else summary


def compare_models(models: list[str], preset: str, config_file: str | None, runs_root: Path, say: Say,
                   overrides: dict[str, Any] | None = None) -> Path:
    base = make_config(preset, config_file, overrides)
    root = new_run_dir(runs_root, "compare")
    profiles: dict[str, Profile] = {}
    vectors: dict[str, SteeringVector] = {}
    heads: list[Headline] = []
    table: list[dict[str, Any]] = []
    for model in models:
        say(f"=== {model} ===")
        run_dir = root / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
        run_dir.mkdir()
        run_all(replace(base, model=model), run_dir, say, progress=False)
        vec = SteeringVector.load(run_dir / "vector.safetensors")
        acts = ActivationSet.load(run_dir / "acts.safetensors")
        seps = separability(acts, vec.meta.get("positive", "reasoning"),
                            vec.meta.get("negative", "memorization"))
        profiles[model] = profile(vec, seps, n_layers=int(vec.meta["n_layers"]))
        vectors[model] = vec
        head = _headline(run_dir)
        heads.append(Headline(**{k: v for k, v in head.items() if k in Headline.__dataclass_fields__}))
        best_sep = max(seps, key=lambda s: s.probe_acc)
        table.append({"model": model, "layers": vec.meta["n_layers"], "hidden": vec.hidden_size,
                      "baseline": head.get("baseline_acc"), "best_layer": head.get("best_layer"),
                      "best_strength": head.get("best_strength"), "steered": head.get("steered_acc"),
                      "delta": head.get("delta"), "p_value": head.get("p_value"),
                      "null_p": head.get("null_p"), "memorization_delta": head.get("memorization_delta"),
                      "most_separable_layer": best_sep.layer, "probe_acc": best_sep.probe_acc,
                      "run": str(run_dir)})
    figures: list[tuple[str, str, Figure]] = [
        ("Reasoning activation profiles on relative depth",
         "Held-out separability and direction norm relative to the residual norm, per model, "
         "against relative depth (layer / (layers - 1)).", cross_model_plot(profiles))]
    same_width: dict[str, dict[int, float]] = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            if vectors[a].hidden_size == vectors[b].hidden_size:
                same_width[f"{a} vs {b}"] = cross_model_cosine(vectors[a], vectors[b])
    if same_width:
        figures.append(("Cosine between models' directions (same width)",
                        "Per-layer cosine of the directions of models with equal hidden size; the "
                        "band is the range expected of random directions.",
                        cross_model_cosine_plot(same_width, hidden_size=vectors[models[0]].hidden_size)))
    report = write_report(root, summary=heads, figures=figures,
                          tables=[("Models", table)]
                          + [(f"Profile: {m}", p.rows()) for m, p in profiles.items()],
                          settings={"models": ", ".join(models), "preset": preset},
                          title="linsteer model comparison")
    say(f"comparison report: {report}")
    return report

