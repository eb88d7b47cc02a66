"""Compiled steered generation: same greedy tokens as Hugging Face ``generate`` with the steering
hooks, steering inside the compiled graph, no recompilation when strengths or vectors change."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from archs import arch_lm, model_folder
from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.generate.compiled import generate_steered, row_steer
from linsteer.generate.eager import generate_answers
from linsteer.generate.static import SteeredGenerator
from linsteer.steer.hooks import Steer, steering

PROMPTS = ["Q: What is 2 + 3?\nA:", "Hi", "Q: Capital of France?\nA:"]


def vector(seed: int = 0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector({L: torch.randn(32, generator=gen) for L in range(3)},
                          {L: 2.0 for L in range(3)}, {})


def hf_generate(lm: Any, spec: Steer | None, new: int = 12) -> torch.Tensor:
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    kwargs = {"max_new_tokens": new, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    if spec is None:
        out = lm.model.generate(**enc, **kwargs)
    else:
        with steering(lm, spec):
            out = lm.model.generate(**enc, **kwargs)
    return out[:, enc["input_ids"].shape[1]:]


def token_ids(lm: Any) -> list[list[int]]:
    return [list(x) for x in lm.tokenizer(PROMPTS)["input_ids"]]


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them as traced."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("positions", ["all", "generated"])
def test_eager_loop_equals_hf_generate_with_hooks(arch: str, positions: str) -> None:
    lm = arch_lm(arch)
    spec = Steer(vector(), (1,), "add", 6.0, positions=positions)  # type: ignore[arg-type]
    with SteeredGenerator(lm, positions=positions, compile=False) as gen:
        steered = gen.generate_ids(token_ids(lm), 12, steer=spec, pad_id=0)
        plain = gen.generate_ids(token_ids(lm), 12, pad_id=0)
    assert torch.equal(torch.tensor(steered), hf_generate(lm, spec))
    assert torch.equal(torch.tensor(plain), hf_generate(lm, None))
    assert steered != plain
    assert not lm.blocks.modules[1]._forward_hooks  # closed: no hook left behind


@pytest.mark.parametrize("operator", ["add", "project_scale"])
def test_compiled_step_steers_inside_the_graph_without_recompiling(operator: str) -> None:
    lm = arch_lm("llama")
    backend = CountingBackend()
    strong = Steer(vector(), (1,), operator, 6.0)  # type: ignore[arg-type]
    other = Steer(vector(1), (2,), operator, -3.0)  # type: ignore[arg-type]
    with SteeredGenerator(lm, operator=operator, compile=True, backend=backend) as gen:
        first = gen.generate_ids(token_ids(lm), 12, steer=strong, pad_id=0)
        graphs = backend.graphs
        again = gen.generate_ids(token_ids(lm), 12, steer=other, pad_id=0)
        plain = gen.generate_ids(token_ids(lm), 12, pad_id=0)
        assert gen.compiled
    assert graphs >= 1 and backend.graphs == graphs  # new vector, layer, strength: same graph
    assert torch.equal(torch.tensor(first), hf_generate(lm, strong))
    assert torch.equal(torch.tensor(again), hf_generate(lm, other))
    assert torch.equal(torch.tensor(plain), hf_generate(lm, None))


def test_per_row_steering_matches_generate_answers_with_hooks() -> None:
    lm = arch_lm("llama")
    a, b = vector(1), vector(2)
    rows = row_steer([a, b, a], 1, "add", [4.0, 0.0, -5.0])
    fast = generate_steered(lm, PROMPTS, steer=rows, max_new_tokens=10, stop_strings=("\n",))
    for i, prompt in enumerate(PROMPTS):
        vec, s = ((a, 4.0), (b, 0.0), (a, -5.0))[i]
        with steering(lm, Steer(vec, (1,), "add", s)):
            ref = generate_answers(lm.model, lm.tokenizer, [prompt], max_new_tokens=10,
                                   stop_strings=("\n",))
        assert fast[i] == ref[0]


def test_failed_compilation_falls_back_with_one_notice() -> None:
    lm = arch_lm("llama")
    notices: list[str] = []

    def broken(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        raise RuntimeError("no compiler here\nsecond line")

    spec = Steer(vector(), (1,), "add", 6.0)
    with SteeredGenerator(lm, compile=True, backend=broken, notice=notices.append) as gen:
        out = gen.generate_ids(token_ids(lm), 8, steer=spec, pad_id=0)
        gen.generate_ids(token_ids(lm), 8, steer=spec, pad_id=0)
        assert not gen.compiled
    assert len(notices) == 1 and "\n" not in notices[0] and "eagerly" in notices[0]
    assert torch.equal(torch.tensor(out), hf_generate(lm, spec, 8))


def test_bad_requests_are_one_line_errors() -> None:
    lm = arch_lm("llama")
    with pytest.raises(LinsteerError, match="positions 'all' or 'generated'"):
        SteeredGenerator(lm, positions="prompt")
    with SteeredGenerator(lm, layers=(1,), compile=False) as gen:
        with pytest.raises(LinsteerError, match=r"layers \[2\] are not among"):
            gen.generate_ids(token_ids(lm), 4, steer=Steer(vector(), (2,), "add", 1.0))
        with pytest.raises(LinsteerError, match="2 row strengths for 3 prompts"):
            gen.generate_ids(token_ids(lm), 4, steer=Steer(vector(), (1,), "add", (1.0, 2.0)))


def test_side_by_side_gives_the_same_text_on_either_path(tmp_path: Any) -> None:
    from linsteer.generate.side_by_side import side_by_side

    folder = model_folder(tmp_path / "model")
    path = tmp_path / "v.safetensors"
    vector().save(path)
    kwargs = {"vector": path, "model": str(folder), "layer": 1, "strength": 8.0, "max_new_tokens": 8,
              "dtype": "fp32"}
    fast = side_by_side("Q: 2 + 2 = ?\nA:", fast=True, **kwargs)  # type: ignore[arg-type]
    assert fast == side_by_side("Q: 2 + 2 = ?\nA:", fast=False, **kwargs)  # type: ignore[arg-type]
    plain, steered = fast.split("--- steered")
    assert plain.split("\n", 1)[1].strip() != steered.split("\n", 1)[1].strip()  # it steered


def test_a_sweep_of_conditions_as_rows_matches_one_setting_at_a_time() -> None:
    from linsteer.generate.compiled import generate_conditions
    from linsteer.steer.setting import Setting

    lm = arch_lm("llama")
    a, b = vector(1), vector(2)
    conds = [Setting(a, 1, "add", 4.0), None, Setting(b, 2, "add", -1.5, "norm"),
             Setting(a, 0, "project_scale", 2.0), Setting(b, 1, "ablate", 1.0)]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(conds))]
    together = generate_conditions(lm, prompts, conds, max_new_tokens=8, batch_size=4)
    for prompt, cond, got in zip(prompts, conds, together, strict=True):
        spec = None if cond is None else Steer(cond.vector, (cond.layer,), cond.operator,  # type: ignore[arg-type]
                                                cond.strength, cond.unit)  # type: ignore[arg-type]
        if spec is None:
            ref = generate_answers(lm.model, lm.tokenizer, [prompt], max_new_tokens=8)
        else:
            with steering(lm, spec):
                ref = generate_answers(lm.model, lm.tokenizer, [prompt], max_new_tokens=8)
        assert got == ref[0]


def test_score_gen_on_the_compiled_path_gives_the_eager_rows(capsys: Any) -> None:
    from linsteer.score.generated import score_gen
    from linsteer.steer.setting import Setting
    from linsteer.sweep.tasks import TaskSpec

    lm = arch_lm("llama")
    items = TaskSpec("arith_gen", "reasoning", n_dev=2, n_test=4).gen_items("test")
    a, b = vector(1), vector(2)
    grid = [Setting(a, 1, "add", 6.0), Setting(b, 2, "add", -1.5, "norm"), Setting(a, 0, "add", 0.0),
            Setting(b, 1, "project_scale", 2.0)]
    kwargs: dict[str, Any] = {"batch_size": 4, "max_new_tokens": 6, "max_rows": 8}
    eager = score_gen(lm, items, grid, compiled=False, **kwargs)
    gens: dict[str, SteeredGenerator] = {}
    try:
        fast = score_gen(lm, items, grid, compiled=True, generators=gens, **kwargs)
        assert set(gens) == {"add", "project_scale"}  # it did take the compiled generator
    finally:
        for gen in gens.values():
            gen.close()
    assert fast == eager  # same rows (predictions, token counts) and the same token total
    assert eager[1][0] != eager[0]  # the steering acted
    assert capsys.readouterr().err == ""  # no notice: nothing fell back


def test_score_gen_falls_back_to_eager_with_one_line_notice(capsys: Any) -> None:
    from linsteer.score.generated import score_gen
    from linsteer.steer.setting import Setting
    from linsteer.sweep.tasks import TaskSpec

    lm = arch_lm("rwkv")  # recurrent: no KV cache to make static
    items = TaskSpec("arith_gen", "reasoning", n_dev=2, n_test=2).gen_items("test")
    vec = SteeringVector({L: torch.randn(32) for L in range(3)}, {L: 2.0 for L in range(3)}, {})
    grid = [Setting(vec, 1, "add", 4.0)]
    fast = score_gen(lm, items, grid, batch_size=2, max_new_tokens=4, compiled=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generating eagerly" in err[0] and "recurrent" in err[0]
    assert fast == score_gen(lm, items, grid, batch_size=2, max_new_tokens=4, compiled=False)


def test_side_by_side_falls_back_to_eager_with_one_line_notice(tmp_path: Any, capsys: Any) -> None:
    from linsteer.generate.side_by_side import side_by_side

    folder = model_folder(tmp_path / "model", arch="rwkv")
    path = tmp_path / "v.safetensors"
    vector().save(path)
    kwargs = {"vector": path, "model": str(folder), "layer": 1, "strength": 8.0, "max_new_tokens": 6,
              "dtype": "fp32", "unit": "raw"}
    fast = side_by_side("Q: 2 + 2 = ?\nA:", fast=True, **kwargs)  # type: ignore[arg-type]
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("linsteer:")]
    assert len(err) == 1 and "generating eagerly" in err[0]
    assert fast == side_by_side("Q: 2 + 2 = ?\nA:", fast=False, **kwargs)  # type: ignore[arg-type]


def test_a_sweep_compiles_once_for_all_its_generation_splits(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_sweep hands one set of compiled generators to every task split and closes them."""
    from linsteer.extract.controls import Control
    from linsteer.score import generated as gen
    from linsteer.sweep.run import SweepSpec, run_sweep
    from linsteer.sweep.store import ResultStore
    from linsteer.sweep.tasks import TaskSpec

    made: list[SteeredGenerator] = []
    closed: list[SteeredGenerator] = []
    init, close = SteeredGenerator.__init__, SteeredGenerator.close

    def counting_init(self: SteeredGenerator, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    def counting_close(self: SteeredGenerator) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(SteeredGenerator, "__init__", counting_init)
    monkeypatch.setattr(SteeredGenerator, "close", counting_close)
    monkeypatch.setattr(gen, "use_compiled", lambda lm, compiled: True)  # as on CUDA
    lm = arch_lm("llama")
    spec = SweepSpec(layers=(1,), strengths=(2.0,), tasks=(TaskSpec("arith_gen", "reasoning", n_dev=2,
                                                                    n_test=2, prompt_format="zero_shot",
                                                                    max_new_tokens=4),),
                     neutral_texts=0, batch_size=2)
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_sweep(lm, [Control("real", 0, vector(1), {})], spec, store)
        assert len(store.cells()) == 4  # dev and test, baseline and the one setting
    assert len(made) == 1 and closed == made
