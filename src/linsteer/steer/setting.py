"""One steering condition: which direction, at which layer, how and how strongly.

A :class:`Setting` is what a sweep evaluates, what calibration searches over, what the replay
engine applies and what the store, the summary and the report key their rows by. It is the only
place a strength becomes raw (``add`` with unit ``norm``: ``strength × vector.norms[layer]``;
:func:`strength_scale` is the rule, used also by the steering hooks), the only place a negative
layer is resolved (``-1`` is the last layer) and the only spelling of the unit's label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any, NamedTuple

from linsteer.errors import LinsteerError
from linsteer.extract.controls import BASELINE, Kind
from linsteer.extract.vector import SteeringVector
from linsteer.model.layers import resolve_layer
from linsteer.steer.operators import OPERATORS, check_operator

UNITS = ("raw", "norm", "ppl", "kl")
DAMAGE_UNITS = ("ppl", "kl")  # strengths that are damage budgets, calibrated per direction
UNIT_LABELS = {"raw": "", "norm": " x norm", "ppl": " ppl budget", "kl": " nats KL"}  # one spelling each
# "lirefs": the seed's intervention (steer/lirefs): every block steered with this layer's
# direction, scale = strength; scored by full forwards (steer/lirefs.lirefs_intervention)
LIREFS = "lirefs"
SETTING_OPERATORS = (*OPERATORS, LIREFS)


def check_setting_operator(operator: str) -> None:
    """An operator a sweep's setting may use: a built-in hook operator or ``lirefs``."""
    if operator != LIREFS:
        check_operator(operator, functions=False)


def check_unit(unit: str, allowed: Sequence[str] = UNITS) -> str:
    """``unit`` if it is one of ``allowed``, else a one-line error naming them."""
    if unit not in allowed:
        raise LinsteerError(f"unknown strength unit {unit!r}; use {' or '.join(allowed)}")
    return unit


def strength_scale(vector: SteeringVector, layer: int, operator: object, unit: str) -> float:
    """What a strength in ``unit`` is multiplied by to become raw: the layer's residual norm for
    ``add`` (or an operator function) in unit ``norm``, else 1 (``project_scale``'s scale and
    ``ablate`` have no unit)."""
    if unit == "norm" and (operator == "add" or callable(operator)):
        return vector.norms[layer]
    return 1.0


def strength_label(strength: float, unit: str | None) -> str:
    """``"0.5 x norm"``: one strength with its unit (``x norm``: times the layer's residual norm)."""
    return f"{strength:g}" + UNIT_LABELS.get(unit or "raw", "")


def strengths_label(values: Sequence[float], unit: str) -> str:
    """``"0.25, 1 x norm"``: a grid of strengths with its unit."""
    return ", ".join(f"{v:g}" for v in values) + UNIT_LABELS.get(unit, "")




class SettingKey(NamedTuple):
    """The identity of a steering condition in stored and summarised rows (no vector)."""

    kind: Kind
    seed: int
    layer: int | None
    operator: str | None
    strength: float | None
    unit: str
    source: str = ""

    @classmethod
    def baseline(cls, unit: str) -> SettingKey:
        """The unsteered condition of a sweep in ``unit``."""
        return cls(BASELINE, 0, None, None, None, unit, "")

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> SettingKey:
        """The key of a stored or summarised row (a mapping with the key's fields)."""
        return cls(row["kind"], row["seed"], row["layer"], row["operator"], row["strength"],
                   row["unit"], row.get("source", ""))

    def cell(self) -> SettingKey:
        """The key with ``kind`` and ``seed`` blanked: the cell a direction shares with its controls."""
        return self._replace(kind="real", seed=0)

    def applied(self) -> SettingKey:
        """Layer, operator, strength and unit only (source blanked too): how a direction was
        applied, whichever direction it was."""
        return self._replace(kind="real", seed=0, source="")


@dataclass(frozen=True)
class Setting:
    """A direction applied at one layer with one operator and strength.

    ``unit``: ``raw`` (residual units), ``norm`` (``add`` only: units of the layer's typical
    residual norm), ``ppl`` (``strength`` is a perplexity budget and ``calibrated`` the raw
    strength found for it) or ``kl`` (``strength`` is a signed KL budget on neutral text, nats
    per token, and ``calibrated`` the raw strength found for it). Give ``n_layers`` to accept
    negative layers (``-1`` = last layer).
    """

    vector: SteeringVector = field(compare=False, hash=False, repr=False)
    layer: int
    operator: str
    strength: float
    unit: str = "raw"
    kind: Kind = "real"
    seed: int = 0
    source: str = ""
    calibrated: float | None = None
    n_layers: InitVar[int | None] = None

    def __post_init__(self, n_layers: int | None) -> None:
        check_unit(self.unit)
        if n_layers is not None:
            object.__setattr__(self, "layer", resolve_layer(self.layer, n_layers))
        elif self.layer < 0:
            raise LinsteerError(f"layer {self.layer} is negative; give n_layers to count from the end")
        if self.unit in DAMAGE_UNITS and self.calibrated is None:
            raise LinsteerError(f"a setting in unit {self.unit} needs its calibrated raw strength")

    def raw_strength(self) -> float:
        """The strength in residual units, as the operator applies it."""
        if self.calibrated is not None:
            return self.calibrated
        return self.strength * strength_scale(self.vector, self.layer, self.operator, self.unit)

    @property
    def key(self) -> SettingKey:
        return SettingKey(self.kind, self.seed, self.layer, self.operator, self.strength, self.unit,
                          self.source)

    @property
    def label(self) -> str:
        if self.operator == LIREFS:
            return f"lirefs (every block) with layer {self.layer}'s direction, scale {self.strength:g}"
        return f"{self.operator} at layer {self.layer}, {strength_label(self.strength, self.unit)}"
