"""K distinct (direction, strength) pairs in one batch: every row gets exactly what it would get
with its own single vector, on the eager hooks (``steering`` with one vector per row) and on the
compiled generator (``SteeredGenerator``, traced by dynamo and run as traced on a CPU).

"Exactly" is bitwise: the reference for row ``i`` is the same batch (same shapes, so the same
kernels) steered by row ``i``'s vector and strength alone, and row ``i`` of it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from archs import arch_lm
from linsteer.extract.vector import SteeringVector
from linsteer.generate.static import SteeredGenerator
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer, steering
from linsteer.steer.setting import Setting

PROMPTS = ["Q: What is 2 + 3?\nA:", "Hi", "Q: Capital of France?\nA:", "Once upon", "7 * 8 =", "The"]


def vector(seed: int, layers: int = 3, d: int = 32) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector({L: torch.randn(d, generator=gen) for L in range(layers)},
                          {L: 1.5 + L for L in range(layers)}, {})


def pairs(k: int) -> list[tuple[SteeringVector, float]]:
    """K distinct pairs, cycled over the batch's rows (so some rows repeat a pair)."""
    distinct = [(vector(10 + j), (-1) ** j * (3.0 + j)) for j in range(k)]
    return [distinct[i % k] for i in range(len(PROMPTS))]


def by_pair(rows: list[tuple[SteeringVector, float]]) -> dict[int, list[int]]:
    """Row indices carrying each distinct pair, keyed by the first row that carries it."""
    out: dict[int, list[int]] = {}
    for i, pair in enumerate(rows):
        first = next(j for j, other in enumerate(rows) if other[0] is pair[0] and other[1] == pair[1])
        out.setdefault(first, []).append(i)
    return out


def hf_generate(lm: LoadedModel, spec: Steer, new: int = 8) -> torch.Tensor:
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)  # type: ignore[operator]
    with steering(lm, spec), torch.inference_mode():
        out = lm.model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=0,  # type: ignore[operator]
                                eos_token_id=None)
    return out[:, enc["input_ids"].shape[1]:]


def logits(lm: LoadedModel, spec: Steer) -> torch.Tensor:
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)  # type: ignore[operator]
    with steering(lm, spec), torch.inference_mode():
        return lm.model(**enc).logits  # type: ignore[operator,no-any-return]


LAYERS = {"one_layer": (1,), "all_layers": (0, 1, 2)}


@pytest.mark.parametrize(("k", "where", "unit"), [(1, "all_layers", "raw"), (3, "one_layer", "raw"),
                                                 (6, "all_layers", "raw"), (6, "one_layer", "norm")])
def test_eager_hooks_give_each_row_its_own_vector_exactly(k: int, where: str, unit: str) -> None:
    lm = arch_lm("llama")
    rows = pairs(k)
    layers = LAYERS[where]
    mixed = Steer(tuple(v for v, _ in rows), layers, "add", tuple(s for _, s in rows), unit)  # type: ignore[arg-type]
    got_logits, got_tokens = logits(lm, mixed), hf_generate(lm, mixed)
    for first, carriers in by_pair(rows).items():
        vec, s = rows[first]
        alone = Steer(vec, layers, "add", s, unit)  # type: ignore[arg-type]
        ref_logits, ref_tokens = logits(lm, alone), hf_generate(lm, alone)
        for i in carriers:
            assert torch.equal(got_logits[i], ref_logits[i])
            assert torch.equal(got_tokens[i], ref_tokens[i])
    if k > 1:  # the pairs really differ: two rows of the same prompt steered differently
        first, second = Steer(rows[0][0], layers, "add", rows[0][1], unit), Steer(  # type: ignore[arg-type]
            rows[1][0], layers, "add", rows[1][1], unit)  # type: ignore[arg-type]
        assert not torch.equal(logits(lm, first)[0], logits(lm, second)[0])


class Traced:
    """A torch.compile backend that runs the traced graph as is (dynamo's compiled path on a CPU)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("compiled", [False, True], ids=["eager_loop", "compiled"])
def test_compiled_generator_gives_each_row_its_own_vector_exactly(compiled: bool) -> None:
    lm = arch_lm("llama")
    ids = [list(x) for x in lm.tokenizer(PROMPTS)["input_ids"]]  # type: ignore[operator]
    rows = pairs(3)
    backend = Traced()
    with SteeredGenerator(lm, compile=compiled, backend=backend) as gen:
        for where, layers in LAYERS.items():
            mixed = Steer(tuple(v for v, _ in rows), layers, "add", tuple(s for _, s in rows))
            together = gen.generate_ids(ids, 6, steer=mixed, batch_size=8)
            conds = [Setting(v, layers[-1], "add", s) for v, s in rows]
            as_conditions = gen.generate_ids(ids, 6, conditions=conds, batch_size=8)
            for first, carriers in by_pair(rows).items():
                vec, s = rows[first]
                alone = gen.generate_ids(ids, 6, steer=Steer(vec, layers, "add", s), batch_size=8)
                single = gen.generate_ids(ids, 6, conditions=[Setting(vec, layers[-1], "add", s)] * len(ids),
                                          batch_size=8)
                for i in carriers:
                    assert together[i] == alone[i], where
                    assert as_conditions[i] == single[i], where
            # the same tokens as Hugging Face generate with the eager per-row hooks
            assert torch.equal(torch.tensor(together), hf_generate(lm, mixed, 6))
            # and the pairs really differ: row 0 under row 1's pair is another continuation
            assert together[0] != gen.generate_ids(ids, 6, steer=Steer(rows[1][0], layers, "add", rows[1][1]),
                                                   batch_size=8)[0]
        assert gen.compiled is compiled
    if compiled:
        assert backend.graphs >= 1
