"""The report stage: analysis figures, steering figures, the headline and the cost table."""

from __future__ import annotations

import json
from typing import Any

from matplotlib.figure import Figure

from linsteer.activations import ActivationSet
from linsteer.analysis import layer_cosines, profile, separability
from linsteer.directions import SteeringVector
from linsteer.errors import LinsteerError
from linsteer.experiments import store_path, task_role
from linsteer.pipeline import Run, Say, settings_block, strengths_label
from linsteer.plots import (
    accuracy_vs_layer,
    accuracy_vs_strength,
    cosine_heatmap,
    duality_plot,
    pca_grid,
    separability_curve,
)
from linsteer.report import Headline, headline_from_rows, write_report
from linsteer.store import ResultStore


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


def steering_figures(rows: list[dict[str, Any]], headline: Headline, unit: str, strengths: str
                     ) -> list[tuple[str, str, Figure]]:
    reasoning = sorted(t for t in {r["task"] for r in rows} if task_role(t) == "reasoning")
    figs: list[tuple[str, str, Figure]] = []
    for task in reasoning:
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


def cost_table(run: Run, headline: Headline) -> list[dict[str, Any]]:
    with ResultStore(store_path(run.dir)) as store:
        phases = {p["name"]: p for p in store.phases()}
        groups = store.db.execute("SELECT sum(seconds), sum(tokens), sum(flops) FROM groups").fetchone()
    rows = []
    for name, label in (("load", "load model (and convert once)"),
                        ("extraction", "extract the direction (one inference pass)")):
        if name in phases:
            p = phases[name]
            rows.append({"method": label, "time_s": round(p["seconds"], 2), "tokens": p["tokens"],
                         "flops": p["flops"], "accuracy": None})
    if groups and groups[0] is not None:
        rows.append({"method": "steering sweep (all conditions, both tasks, neutral text)",
                     "time_s": round(groups[0], 2), "tokens": groups[1], "flops": groups[2],
                     "accuracy": None})
    rows.append({"method": "unsteered baseline (test split)", "time_s": None, "tokens": None,
                 "flops": None, "accuracy": headline.baseline_acc})
    rows.append({"method": f"steered, dev-selected (layer {headline.best_layer}, strength "
                           f"{headline.best_strength})", "time_s": None, "tokens": None,
                 "flops": None, "accuracy": headline.steered_acc})
    return rows


def stage_report(run: Run, acts: ActivationSet, vector: SteeringVector, rows: list[dict[str, Any]],
                 say: Say) -> Any:
    cfg = run.config
    model = rows[0]["model"] if rows else cfg.model
    reasoning = [t for t in cfg.tasks if task_role(t) == "reasoning"]
    memorization = [t for t in cfg.tasks if task_role(t) == "memorization"]
    if not reasoning:
        raise LinsteerError("the report needs a reasoning task; add arith_mc to 'tasks'")
    with ResultStore(store_path(run.dir)) as store:  # phases survive a resumed or partial run
        extraction = next((p for p in store.phases() if p["name"] == "extraction"), {})
    primary = [r for r in rows if r["source"] in ("", cfg.method)]  # extra sources: tables only
    headline = headline_from_rows(
        primary, model=model, task=reasoning[0], memorization_task=memorization[0] if memorization else None,
        extraction_seconds=extraction.get("seconds"),
        extraction_tokens=int(extraction.get("tokens", 0)) or None)
    figs, profile_rows = analysis_figures(acts, vector, cfg.analysis_layers)
    figs += steering_figures(primary, headline, cfg.unit, strengths_label(cfg.strengths, cfg.unit))
    test_real = [r for r in rows if r["split"] == "test" and r["kind"] in ("baseline", "real")]
    controls_file = run.dir / "controls.json"
    controls = json.loads(controls_file.read_text()) if controls_file.exists() else []
    control_rows = [{"kind": c["kind"], "seed": c["seed"],
                     **{f"cos_L{k}": round(v, 3) for k, v in c["cos_to_real"].items()}} for c in controls]
    tables = [
        ("Cost and benefit", cost_table(run, headline)),
        ("Test split: baseline and real direction", test_real),
        ("All cells", rows),
        ("Layer profile", profile_rows),
        ("Controls: cosine to the real direction", control_rows),
    ]
    from linsteer.confounds import confound_html, read_confounds
    from linsteer.layerscan import read_scan, scan_figure

    confounds = read_confounds(run.dir)
    scan = read_scan(run.dir)
    extra: dict[str, Any] = {"confounds": confounds} if confounds else {}
    if scan is not None:
        figs.insert(0, ("Layer scan: every layer on dev",
                        f"Change in the gold option's probability (top) and dev accuracy (bottom) when "
                        f"steering {scan.task} at each layer; shaded: the null directions' range at "
                        f"the same layer and strength. Dotted: the layers {list(scan.chosen)} chosen "
                        "for the full protocol on the test split.", scan_figure(scan)))
        extra["layer_scan"] = {k: v for k, v in scan.to_json().items() if k != "cells"}
    path = write_report(run.dir, summary=headline, figures=figs, tables=tables,
                        settings=settings_block(run, vector),
                        title=f"linsteer report: {model}",
                        extra=extra,
                        notice_html=confound_html(confounds))
    say(headline.verdict)
    say(f"report: {path}")
    return path
