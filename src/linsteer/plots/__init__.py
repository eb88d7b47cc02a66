"""Figures for diagnostics and steering results. Every function returns a ``matplotlib`` Figure.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly (never
``pyplot``, so there is no global figure state) and sized for a ~700 px wide report at
:data:`DPI`.

Steering-effect figures read the results table: a list of "cell summaries" (dicts), one per
(model, task, split, control kind, layer, operator, strength); its schema lives in
:mod:`linsteer.summary` (:data:`REQUIRED_KEYS`, :func:`check_rows`).

- :mod:`linsteer.plots.base`: sizes, colours, saving, selecting rows;
- :mod:`linsteer.plots.analysis`: PCA, separability, cosines, cross-model profiles;
- :mod:`linsteer.plots.steering`: accuracy against layer and strength, the duality.
"""

from linsteer.plots.analysis import (
    cosine_heatmap,
    cross_model_cosine_plot,
    cross_model_plot,
    pca_grid,
    separability_curve,
)
from linsteer.plots.base import DPI, figure_base64_png, save_figure, select_rows
from linsteer.plots.steering import accuracy_vs_layer, accuracy_vs_strength, duality_plot
from linsteer.summary import KINDS, REQUIRED_KEYS, check_rows

__all__ = [
    "DPI",
    "KINDS",
    "REQUIRED_KEYS",
    "accuracy_vs_layer",
    "accuracy_vs_strength",
    "check_rows",
    "cosine_heatmap",
    "cross_model_cosine_plot",
    "cross_model_plot",
    "duality_plot",
    "figure_base64_png",
    "pca_grid",
    "save_figure",
    "select_rows",
    "separability_curve",
]
