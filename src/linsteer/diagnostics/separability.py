"""How well a linear read-out separates the two classes at each layer, held out.

Leakage rules: :func:`separability` fits every quantity it reports (feature standardisation, the
logistic probe, the mean-difference direction) on the training folds only and scores the held-out
fold, and repeats the whole procedure on shuffled labels as a chance reference. A ``vector`` passed
in is scored on all rows as given; that number is in-sample when the vector was extracted from the
same activations (its metadata ``dataset_sha256`` tells).

:func:`source_confound` asks the same of the source datasets: a direction can encode where a
prompt came from rather than reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector

F64 = NDArray[np.float64]


# --------------------------------------------------------------------------- separability


@dataclass(frozen=True)
class LayerSeparability:
    """How well two classes separate at one layer, all scores on held-out folds.

    ``probe_acc`` (± ``probe_acc_std`` over folds): accuracy of an L2 logistic probe on features
    standardised with training-fold statistics. ``auroc`` / ``cohens_d``: of the held-out rows'
    projection on the training-fold mean-difference direction (mean over folds). ``shuffled_*``:
    the same with labels permuted (chance reference, ~0.5 for balanced classes). ``majority``:
    accuracy of always guessing the larger class. ``vector_auroc`` / ``vector_d``: projection on the
    given vector's direction over all rows (None without a vector; in-sample if the vector came
    from these activations).
    """

    layer: int
    probe_acc: float
    probe_acc_std: float
    auroc: float
    cohens_d: float
    shuffled_acc: float
    shuffled_auroc: float
    majority: float
    n_pos: int
    n_neg: int
    folds: int
    vector_auroc: float | None = None
    vector_d: float | None = None


def _auroc(scores: F64, target: NDArray[np.bool_]) -> float:
    """Mann-Whitney AUROC (ties count one half); NaN when a class is absent."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(target.sum()), int((~target).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[target].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cohens_d(pos: F64, neg: F64) -> float:
    """Cohen's d of two samples with the pooled standard deviation (NaN if undefined)."""
    n1, n2 = len(pos), len(neg)
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        return float("nan")
    v1 = float(np.var(pos, ddof=1)) if n1 > 1 else 0.0
    v2 = float(np.var(neg, ddof=1)) if n2 > 1 else 0.0
    pooled = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    diff = float(np.mean(pos) - np.mean(neg))
    if pooled == 0:
        return float("nan") if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)


def _standardise(train: F64, test: F64) -> tuple[F64, F64]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def check_folds(counts: Sequence[int], folds: int, what: str) -> None:
    if folds < 2:
        raise LinsteerError(f"folds must be >= 2, got {folds}")
    if min(counts) < folds:
        raise LinsteerError(
            f"{what} has a class with only {min(counts)} examples, fewer than folds={folds}; "
            "lower folds or add examples"
        )


def cv_scores(
    x: F64, y: NDArray[np.int64], folds: int, seed: int, *, with_direction: bool
) -> tuple[float, float, float, float]:
    """Held-out (probe accuracy mean, std, direction AUROC, direction Cohen's d) over stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    accs: list[float] = []
    aurocs: list[float] = []
    ds: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(x, y):
        xtr, xte = _standardise(x[train_idx], x[test_idx])
        ytr, yte = y[train_idx], y[test_idx]
        clf = LogisticRegression(C=1.0, max_iter=2000)
        clf.fit(xtr, ytr)
        accs.append(float((clf.predict(xte) == yte).mean()))
        if with_direction:
            # Mean-difference direction from the TRAINING fold only, in raw activation space.
            raw_tr, raw_te = x[train_idx], x[test_idx]
            direction = raw_tr[ytr == 1].mean(axis=0) - raw_tr[ytr == 0].mean(axis=0)
            norm = float(np.linalg.norm(direction))
            direction = direction / norm if norm > 0 else direction
            proj = raw_te @ direction
            aurocs.append(_auroc(proj, yte == 1))
            ds.append(cohens_d(proj[yte == 1], proj[yte == 0]))
    auroc = float(np.nanmean(aurocs)) if aurocs else float("nan")
    d = float(np.nanmean(ds)) if ds and np.isfinite(ds).any() else float("nan")
    return float(np.mean(accs)), float(np.std(accs)), auroc, d


def two_class(
    acts: ActivationSet, positive: str, negative: str
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    if positive == negative:
        raise LinsteerError(f"the two classes must differ; both are {positive!r}")
    present = sorted(set(acts.labels))
    for label in (positive, negative):
        if label not in present:
            raise LinsteerError(
                f"class {label!r} has no examples; labels present: {', '.join(present) or 'none'}"
            )
    rows = np.array([i for i, lab in enumerate(acts.labels) if lab in (positive, negative)], dtype=np.intp)
    y = np.array([1 if acts.labels[i] == positive else 0 for i in rows], dtype=np.int64)
    return rows, y


def separability(
    acts: ActivationSet,
    positive: str = "reasoning",
    negative: str = "memorization",
    *,
    vector: SteeringVector | None = None,
    folds: int = 5,
    seed: int = 0,
    layers: Sequence[int] | None = None,
) -> list[LayerSeparability]:
    """Held-out separability of ``positive`` vs ``negative`` at each layer of ``acts``.

    Stratified ``folds``-fold cross-validation (shuffled with ``seed``); see
    :class:`LayerSeparability` for what each number means. ``layers`` restricts the layers scored.
    """
    rows, y = two_class(acts, positive, negative)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    check_folds([n_pos, n_neg], folds, f"{positive!r} vs {negative!r}")
    if vector is not None and vector.hidden_size != acts.hidden_size:
        raise LinsteerError(
            f"vector hidden size {vector.hidden_size} does not match the activations' {acts.hidden_size}"
        )
    shuffled = np.random.default_rng(seed).permutation(y)
    chosen = list(acts.layers) if layers is None else list(layers)
    out: list[LayerSeparability] = []
    for layer in chosen:
        x = acts.layer(layer).to("cpu").double().numpy()[rows]
        if not np.isfinite(x).all():
            raise LinsteerError(f"activations at layer {layer} contain NaN or inf")
        acc, acc_std, auroc, d = cv_scores(x, y, folds, seed, with_direction=True)
        sh_acc, _, sh_auroc, _ = cv_scores(x, shuffled, folds, seed, with_direction=True)
        v_auroc: float | None = None
        v_d: float | None = None
        if vector is not None and layer in vector.directions:
            unit = vector.unit(layer).double().numpy()
            proj = x @ unit
            v_auroc = _auroc(proj, y == 1)
            v_d = cohens_d(proj[y == 1], proj[y == 0])
        out.append(
            LayerSeparability(
                layer=layer,
                probe_acc=acc,
                probe_acc_std=acc_std,
                auroc=auroc,
                cohens_d=d,
                shuffled_acc=sh_acc,
                shuffled_auroc=sh_auroc,
                majority=max(n_pos, n_neg) / (n_pos + n_neg),
                n_pos=n_pos,
                n_neg=n_neg,
                folds=folds,
                vector_auroc=v_auroc,
                vector_d=v_d,
            )
        )
    return out


# --------------------------------------------------------------------------- source confound


@dataclass(frozen=True)
class SourceConfound:
    """Held-out accuracy of predicting the prompt SOURCE from activations within one class.

    High ``probe_acc`` over ``majority`` and ``shuffled_acc`` means the activations encode the
    source, so a class-mean difference may partly encode source rather than reasoning.
    ``n_sources``: sources with enough examples that took part.
    """

    layer: int
    label: str
    n: int
    n_sources: int
    probe_acc: float
    shuffled_acc: float
    majority: float


def source_confound(
    acts: ActivationSet,
    sources: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    folds: int = 3,
    seed: int = 0,
    layers: Sequence[int] | None = None,
) -> list[SourceConfound]:
    """Probe accuracy for the source within each class (``labels``, default all) that has >= 2 sources.

    ``sources`` has one entry per prompt (e.g. ``[item.source for item in items]``). Sources with
    fewer than ``folds`` examples in a class are dropped; a class left with fewer than 2 sources is
    skipped (nothing to predict). Returns one row per (layer, class) scored.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    if len(sources) != len(acts.labels):
        raise LinsteerError(f"sources has {len(sources)} entries but there are {len(acts.labels)} prompts")
    if folds < 2:
        raise LinsteerError(f"folds must be >= 2, got {folds}")
    wanted = sorted(set(acts.labels)) if labels is None else list(labels)
    chosen = list(acts.layers) if layers is None else list(layers)
    rng = np.random.default_rng(seed)
    out: list[SourceConfound] = []
    for label in wanted:
        idx = [i for i, lab in enumerate(acts.labels) if lab == label]
        counts: dict[str, int] = {}
        for i in idx:
            counts[sources[i]] = counts.get(sources[i], 0) + 1
        keep = sorted(s for s, c in counts.items() if c >= folds)
        if len(keep) < 2:
            continue
        rows = np.array([i for i in idx if sources[i] in keep], dtype=np.intp)
        y = np.array([keep.index(sources[i]) for i in rows], dtype=np.int64)
        shuffled = rng.permutation(y)
        majority = float(np.bincount(y).max() / len(y))
        for layer in chosen:
            x = acts.layer(layer).to("cpu").double().numpy()[rows]
            accs: dict[str, list[float]] = {"real": [], "shuffled": []}
            for name, target in (("real", y), ("shuffled", shuffled)):
                splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
                for tr, te in splitter.split(x, target):
                    xtr, xte = _standardise(x[tr], x[te])
                    clf = LogisticRegression(C=1.0, max_iter=2000)
                    clf.fit(xtr, target[tr])
                    accs[name].append(float((clf.predict(xte) == target[te]).mean()))
            out.append(
                SourceConfound(
                    layer=layer,
                    label=label,
                    n=len(rows),
                    n_sources=len(keep),
                    probe_acc=float(np.mean(accs["real"])),
                    shuffled_acc=float(np.mean(accs["shuffled"])),
                    majority=majority,
                )
            )
    return out
