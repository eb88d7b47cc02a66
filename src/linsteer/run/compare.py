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

from linsteer.diagnostics.confounds import read_confounds
from linsteer.diagnostics.crossmodel import PairSimilarity, cka_at, pair_similarities
from linsteer.diagnostics.geometry import Profile, profile
from linsteer.diagnostics.separability import separability
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.report.diagnostic_figures import cross_model_cosine_plot, cross_model_plot
from linsteer.report.html import write_report
from linsteer.report.scan_figures import cka_figure, scan_gain_figure
from linsteer.results.selection import Headline
from linsteer.run.config import make_config
from linsteer.run.rundir import new_run_dir, safe_name
from linsteer.run.stages import Say, run_all
from linsteer.run.validate import validate_config
from linsteer.sweep.layerscan import read_scan


def _headline(run_dir: Path) -> dict[str, Any]:
    data = json.loads((run_dir / "results.json").read_text())
    summary = data["summary"]
    return summary[0] if isinstance(summary, list) else summary


def compare_models(models: list[str], preset: str, config_file: str | None, runs_root: Path, say: Say,
                   overrides: dict[str, Any] | None = None, root: Path | None = None) -> Path:
    """``root``: an earlier comparison's directory to resume (each model's run resumes)."""
    base = make_config(preset, config_file, overrides)
    configs = {model: validate_config(replace(base, model=model)) for model in models}  # all first
    root = root or new_run_dir(runs_root, "compare")
    profiles: dict[str, Profile] = {}
    vectors: dict[str, SteeringVector] = {}
    all_acts: dict[str, ActivationSet] = {}
    gains: dict[str, dict[int, float]] = {}
    heads: list[Headline] = []
    table: list[dict[str, Any]] = []
    for model in models:
        say(f"=== {model} ===")
        run_dir = root / safe_name(model)  # a stable name, so --resume finds it
        run_dir.mkdir(parents=True, exist_ok=True)
        run_all(configs[model], run_dir, say, progress=False)
        vec = SteeringVector.load(run_dir / "vector.safetensors")
        acts = ActivationSet.load(run_dir / "acts.safetensors")
        seps = separability(acts, vec.meta.get("positive", "reasoning"),
                            vec.meta.get("negative", "memorization"))
        profiles[model] = profile(vec, seps, n_layers=int(vec.meta["n_layers"]))
        vectors[model] = vec
        all_acts[model] = acts
        scan = read_scan(run_dir)
        if scan is not None:
            gains[model] = scan.layer_scores()
        head = _headline(run_dir)
        heads.append(Headline(**{k: v for k, v in head.items() if k in Headline.__dataclass_fields__}))
        best_sep = max(seps, key=lambda s: s.probe_acc)
        table.append({"model": model, "layers": vec.meta["n_layers"], "hidden": vec.hidden_size,
                      "baseline": head.get("baseline_acc"), "best_layer": head.get("best_layer"),
                      "best_strength": head.get("best_strength"), "steered": head.get("steered_acc"),
                      "delta": head.get("delta"), "p_value": head.get("p_value"),
                      "null_p": head.get("null_p"), "memorization_delta": head.get("memorization_delta"),
                      "most_separable_layer": best_sep.layer, "probe_acc": best_sep.probe_acc,
                      "relative_depth": round(best_sep.layer / max(1, int(vec.meta["n_layers"]) - 1), 2),
                      "extraction_s": head.get("extraction_seconds"),
                      "extraction_tokens": head.get("extraction_tokens"),
                      **run_extras(run_dir), "run": str(run_dir)})
    figures: list[tuple[str, str, Figure]] = [
        ("Reasoning activation profiles on relative depth",
         "Held-out separability and direction norm relative to the residual norm, per model, "
         "against relative depth (layer / (layers - 1)).", cross_model_plot(profiles))]
    if gains:
        figures.append(("Steering gain per layer on relative depth (dev scan)",
                        "Per model, the real direction's gain in gold-option probability over the mean "
                        "of its null directions at each layer (best scan strength), on relative depth.",
                        scan_gain_figure(gains, {m: int(vectors[m].meta["n_layers"]) for m in gains})))
    best = {r["model"]: r["most_separable_layer"] for r in table}
    figs, cka_rows = similarity_figures(pair_similarities(all_acts, vectors), all_acts, best)
    figures += figs
    report = write_report(root, summary=heads, figures=figures,
                          tables=[("Models", table), ("Linear CKA between models", cka_rows)]
                          + [(f"Profile: {m}", p.rows()) for m, p in profiles.items()],
                          settings={"models": ", ".join(models), "preset": preset},
                          title="linsteer model comparison")
    say(f"comparison report: {report}")
    return report


def run_extras(run_dir: Path) -> dict[str, Any]:
    """Confound and scan columns for one model's row of the comparison table."""
    out: dict[str, Any] = {}
    conf = read_confounds(run_dir)
    if conf:
        out.update(embedding_acc=conf.get("embedding_mean_probe_accuracy"),
                   bag_of_tokens_acc=conf.get("bag_of_tokens_accuracy"),
                   surface_confound=conf.get("surface_confound"))
    scan = read_scan(run_dir)
    if scan is not None:
        scores = scan.layer_scores()
        best = max(scores, key=lambda k: scores[k])
        out.update(scan_best_layer=best, scan_gain=round(scores[best], 4),
                   scan_seconds=round(scan.seconds, 1))
    return out


def similarity_figures(pairs: list[PairSimilarity], acts: dict[str, ActivationSet], best: dict[str, int]
                       ) -> tuple[list[tuple[str, str, Figure]], list[dict[str, Any]]]:
    """The CKA figure (pairs read on the same prompts), the same-width cosine figure and the CKA
    table's rows (CKA at each model's ``best`` layer and its mean over depth)."""
    figures: list[tuple[str, str, Figure]] = []
    curves = {p.name: p.cka for p in pairs if p.cka is not None}
    rows = [{"pair": p.name, "layer_a": best[p.a], "layer_b": best[p.b],
             "cka_at_most_separable": round(cka_at(acts[p.a], best[p.a], acts[p.b], best[p.b]), 4),
             "cka_mean_over_depth": round(float(sum(p.cka.values()) / len(p.cka)), 4)}
            for p in pairs if p.cka is not None]
    if curves:
        figures.append(("Width-free comparison: linear CKA on the same prompts",
                        "Linear CKA between two models' activations on the same contrast prompts, at "
                        "the layers nearest each relative depth (works across widths and tokenizers; "
                        "directions' cosines would not).", cka_figure(curves)))
    same_width = {p.name: p.cosine for p in pairs if p.cosine is not None}
    widths = {p.hidden_size for p in pairs if p.cosine is not None}
    if same_width:
        hidden_size = widths.pop() if len(widths) == 1 else None  # the random band of one width only
        figures.append(("Cosine between models' directions (same width)",
                        "Per-layer cosine of the directions of models with equal hidden size; the "
                        "band is the range expected of random directions.",
                        cross_model_cosine_plot(same_width, hidden_size=hidden_size)))
    return figures, rows
