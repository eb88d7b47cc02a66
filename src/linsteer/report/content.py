"""What the report shows: the analysis, steering and chain-of-thought-length figures with their
captions, and the cost table."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from linsteer.diagnostics.confounds import confound_sentence
from linsteer.diagnostics.geometry import layer_cosines, profile
from linsteer.diagnostics.separability import (
    separability,
)
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.report.cot_figures import cot_length_figure, generative_tasks
from linsteer.report.diagnostic_figures import cosine_heatmap, pca_grid, separability_curve
from linsteer.report.steering_figures import accuracy_vs_layer, accuracy_vs_strength, duality_plot
from linsteer.results.selection import Headline
from linsteer.results.table import Row
from linsteer.sweep.store import ResultStore, store_path
from linsteer.sweep.tasks import task_role


def analysis_figures(acts: ActivationSet, vector: SteeringVector, n_panels: int
                     ) -> tuple[list[tuple[str, str, Figure]], list[dict[str, Any]]]:
    positive = vector.meta.get("positive", "reasoning")
    negative = vector.meta.get("negative", "memorization")
    layers = acts.layers
    step = max(1, len(layers) // max(1, n_panels))
    shown = layers[::step][:n_panels]
    seps = separability(acts, positive, negative, folds=5, seed=0)
    figs: list[tuple[str, str, Figure]] = [
        ("PCA of the contrast activations",
         f"Top two principal components per layer (last prompt token), coloured by class "
         f"({positive} vs {negative}).", pca_grid(acts, shown, "label")),
    ]
    sources = json.loads(acts.meta["sources"]) if "sources" in acts.meta else None
    if sources and len(set(sources)) > 2:
        figs.append(("PCA by source dataset",
                     "The same projections coloured by source: a direction can encode the source "
                     "or the prompt length rather than reasoning.",
                     pca_grid(acts, shown, "source", sources)))
    figs += [
        ("Linear separability per layer",
         "Held-out (5-fold) logistic-probe accuracy and AUROC of the projection on the "
         "mean-difference direction (fit on the training folds only); the shuffled-label probe "
         "is the chance reference.", separability_curve(seps)),
        ("Cosine similarity of the direction across layers",
         "How the reasoning direction rotates with depth: cosine between the per-layer "
         "mean-difference directions.", cosine_heatmap(layer_cosines(vector), vector.layers)),
    ]
    prof = profile(vector, seps, n_layers=int(vector.meta.get("n_layers", len(layers))))
    return figs, prof.rows()


def steering_figures(rows: Sequence[Row], headline: Headline, unit: str, strengths: str
                     ) -> list[tuple[str, str, Figure]]:
    reasoning = sorted(t for t in {r["task"] for r in rows} if task_role(t) == "reasoning")
    figs: list[tuple[str, str, Figure]] = []
    steered_layers = {r["layer"] for r in rows if r["layer"] is not None and r["split"] == "test"}
    for task in reasoning if len(steered_layers) > 1 else ():  # one layer: the scan shows layers
        figs.append((f"Steering effect by layer ({task}, test split)",
                     f"Accuracy of the real direction per layer and strength ({strengths}), "
                     "with 95% Wilson bands; the grey band spans the null directions at the "
                     "same layer and strength; the line is the unsteered baseline.",
                     accuracy_vs_layer(rows, task, "test", unit=unit)))
    best = headline.best_layer
    if best is not None:
        for task in reasoning:
            figs.append((f"Steering effect by strength at layer {best} ({task})",
                         "Real direction vs its controls (null band, negated, shuffled labels, "
                         "isotropic random) at the dev-selected layer, test split.",
                         accuracy_vs_strength(rows, task, best, "test", unit=unit)))
        figs.append((f"The duality at layer {best}",
                     "Reasoning-task and memorization-task accuracy against strength on the "
                     "same axes (test split).", duality_plot(rows, best, "test", unit=unit)))
    return figs


def cot_length_figures(rows: Sequence[Row], alternatives: Mapping[str, Any] | None
                       ) -> list[tuple[str, str, Figure]]:
    """The report's chain-of-thought length figures, one per generative task (none for a run
    scored by multiple choice only)."""
    out = []
    for task in generative_tasks(rows):
        fig = cot_length_figure(rows, task, alternatives)
        if fig is not None:
            out.append((f"Accuracy vs chain-of-thought length ({task.partition('=')[0]})",
                        "Test accuracy (95% Wilson interval) of every condition against its mean "
                        "generated tokens per answer: the unsteered base, the real direction at each "
                        "layer and strength, the null and control directions and the alternatives "
                        "(prompts, few-shot, steering on top, LoRA), on the same items. A condition "
                        "that helps only by writing longer (or shorter) chains sits on a trend.", fig))
    return out


def cost_table(run_dir: Path, headline: Headline) -> list[dict[str, Any]]:
    with ResultStore(store_path(run_dir)) as store:
        phases = {p.name: p for p in store.phases()}
        sweep = store.sweep_cost()
    rows = []
    for name, label in (("load", "load model (and convert once)"),
                        ("extraction", "extract the direction (one inference pass)")):
        if name in phases:
            p = phases[name]
            rows.append({"method": label, "time_s": round(p.seconds, 2), "tokens": p.tokens,
                         "flops": p.flops, "accuracy": None})
    if sweep is not None:
        rows.append({"method": "steering sweep (all conditions, both tasks, neutral text)",
                     "time_s": round(sweep.seconds, 2), "tokens": sweep.tokens, "flops": sweep.flops,
                     "accuracy": None})
    rows.append({"method": "unsteered baseline (test split)", "time_s": None, "tokens": None,
                 "flops": None, "accuracy": headline.baseline_acc})
    rows.append({"method": f"steered, dev-selected (layer {headline.best_layer}, strength "
                           f"{headline.best_strength})", "time_s": None, "tokens": None,
                 "flops": None, "accuracy": headline.steered_acc})
    return rows




def confound_html(data: dict[str, Any] | None) -> str:
    """The report's notice near the top (empty without diagnostics)."""
    if not data:
        return ""
    emb = data.get("embedding_probe_accuracy")
    bag = data.get("bag_of_tokens_accuracy")
    mean = data.get("embedding_mean_probe_accuracy")
    cells = (f"token embeddings (layer −1, read position) {'n/a' if emb is None else f'{emb:.2f}'} · "
             f"mean token embedding {'n/a' if mean is None else f'{mean:.2f}'} · length only "
             f"{data['length_only_accuracy']:.2f} · bag of tokens {'n/a' if bag is None else f'{bag:.2f}'}"
             f" · best residual layer {data['best_layer']}: {data['best_probe_accuracy']:.2f} · "
             f"shuffled labels {data['shuffled_accuracy']:.2f}")
    cls = "bad" if data["surface_confound"] else "good"
    return (f'<section id="confounds"><h2>Confounds</h2><p class="{cls}"><b>'
            f"{html.escape(confound_sentence(data))}</b></p>"
            f'<p class="note">Held-out probe accuracies: {html.escape(cells)}. '
            f'Rule: {html.escape(str(data.get("rule", "")))}.</p></section>')
