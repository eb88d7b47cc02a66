"""The shared-prefix replay scores every steering setting exactly as a full steered forward does."""

from __future__ import annotations

import pytest
import torch

from archs import ALL_ARCHS, arch_lm
from linsteer.extract.read import left_pad, tokenize
from linsteer.extract.vector import SteeringVector
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting

PROMPTS = ["Q: What is 2 + 3?\nA: 5", "Q: Capital of France?\nA: Paris", "Hi there", "12 * 4 = 48"]


def settings_for(lm, layers=(0, 1)):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    vecs = [SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in range(lm.n_layers)},
                           {L: 3.0 for L in range(lm.n_layers)}, {}) for _ in range(2)]
    out = []
    for layer in layers:
        for vec in vecs:
            out += [Setting(vec, layer, "add", 4.0), Setting(vec, layer, "add", -2.0, "norm"),
                    Setting(vec, layer, "project_scale", 2.0), Setting(vec, layer, "ablate", 1.0)]
    return out


def logprobs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_replay_equals_full_steered_forward(arch: str) -> None:
    lm = arch_lm(arch)
    prompts = PROMPTS[:1] if arch == "rwkv" else PROMPTS
    ids = tokenize(lm, prompts)
    batch = left_pad(ids, 0)
    settings = settings_for(lm)
    fast = Replayer(lm, max_rows=8)
    base_fast, res_fast = fast.run(batch, settings, 3, logprobs)
    assert fast.replays is (arch != "rwkv")  # recurrent models take the full path
    slow = Replayer(lm, engine="full")
    base_slow, res_slow = slow.run(batch, settings, 3, logprobs)
    torch.testing.assert_close(base_fast, base_slow, atol=1e-4, rtol=1e-4)
    for a, b in zip(res_fast, res_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the settings really changed something
    assert not torch.allclose(res_fast[0], base_fast, atol=1e-3)


def test_replay_falls_back_when_self_check_fails() -> None:
    lm = arch_lm("llama")
    batch = left_pad(tokenize(lm, PROMPTS), 0)
    rep = Replayer(lm)
    # a model whose logits are not head(final_norm(h)) (here: post-processed in its forward)
    def rescale(module, args, output):  # type: ignore[no-untyped-def]
        output.logits = output.logits * 2.0
        return output

    hook = lm.model.register_forward_hook(rescale)
    try:
        rep.run(batch, settings_for(lm)[:2], 3, logprobs)
    finally:
        hook.remove()
    assert rep.replays is False


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_options_sharing_one_prompt_row_score_like_separate_rows(arch: str) -> None:
    from linsteer.prompts.builtin_tasks import builtin_task
    from linsteer.score.mc import score_mc

    lm = arch_lm(arch)
    items = builtin_task("arith_mc", split="dev", n=6) + builtin_task("facts_mc", split="dev", n=3)
    settings = settings_for(lm, layers=(1,))[:3]
    tree_base, tree_steered, tree_tokens = score_mc(lm, items, settings, tree=True, batch_size=4)
    rows_base, rows_steered, row_tokens = score_mc(lm, items, settings, tree=False, batch_size=4)
    for a, b in zip([tree_base, *tree_steered], [rows_base, *rows_steered], strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.sum_logprobs == pytest.approx(y.sum_logprobs, abs=2e-3)
    if arch == "rwkv" or arch == "gemma3":  # recurrent; tiny sliding window (8) < row length
        assert tree_tokens == row_tokens  # so every option keeps its own row
    else:
        assert tree_tokens < row_tokens / 2  # the prompt is computed once per item, not per option


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "rwkv"])
def test_rows_engine_scores_like_the_replay_and_one_by_one(arch: str) -> None:
    lm = arch_lm(arch)
    prompts = PROMPTS[:1] if arch == "rwkv" else PROMPTS
    batch = left_pad(tokenize(lm, prompts), 0)
    settings = settings_for(lm)
    rows = Replayer(lm, engine="rows", pass_tokens=40)  # several forwards, mixed layers in each
    assert rows.chosen_engine() == "rows"
    base_rows, res_rows = rows.run(batch, settings, 3, logprobs)
    base_slow, res_slow = Replayer(lm, engine="full").run(batch, settings, 3, logprobs)
    torch.testing.assert_close(base_rows, base_slow, atol=1e-4, rtol=1e-4)
    for a, b in zip(res_rows, res_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(res_rows[0], base_rows, atol=1e-3)


def test_engine_choice_and_mc_scores_agree() -> None:
    from linsteer.errors import LinsteerError
    from linsteer.prompts.builtin_tasks import builtin_task
    from linsteer.score.mc import score_mc

    lm = arch_lm("llama")
    assert Replayer(lm).chosen_engine() == "replay"  # a CPU: the replay wins there
    with pytest.raises(LinsteerError, match="unknown sweep engine 'fast'"):
        Replayer(lm, engine="fast").chosen_engine()
    items = builtin_task("arith_mc", split="dev", n=6)
    settings = settings_for(lm, layers=(0, 1))[:6]
    a_base, a_per, _ = score_mc(lm, items, settings, batch_size=4, replayer=Replayer(lm, engine="replay"))
    b_base, b_per, _ = score_mc(lm, items, settings, batch_size=4, replayer=Replayer(lm, engine="rows"))
    for a, b in zip([a_base, *a_per], [b_base, *b_per], strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.sum_logprobs == pytest.approx(y.sum_logprobs, abs=1e-3)


def test_neutral_scorer_runs_through_the_rows_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from linsteer.score import neutral as experiments

    lm = arch_lm("llama")
    settings = settings_for(lm, layers=(1,))[:3]
    texts = ["The cat sat on the mat.", "Rivers flow to the sea."]
    replay = experiments.neutral_effects(lm, settings, texts)
    monkeypatch.setattr(experiments, "Replayer", functools.partial(Replayer, engine="rows"))
    rows = experiments.neutral_effects(lm, settings, texts)
    assert rows[2] == replay[2]
    for a, b in zip([rows[0], *rows[1]], [replay[0], *replay[1]], strict=True):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_recurrent_model_scored_in_a_padded_batch_equals_each_item_alone() -> None:
    """RWKV ignores the attention mask and takes no position ids: padding would change its state,
    so its rows are batched with rows of equal length only."""
    from linsteer.prompts.builtin_tasks import builtin_task
    from linsteer.prompts.formats import get_format
    from linsteer.score.mc import score_mc

    lm = arch_lm("rwkv")
    items = builtin_task("arith_mc", split="dev", n=4) + builtin_task("facts_mc", split="dev", n=3)
    prompts = [get_format("mc_text").render_item(i) for i in items]
    assert len({len(ids) for ids in tokenize(lm, prompts)}) > 1  # prompts of several lengths
    settings = settings_for(lm, layers=(1,))[:2]
    base, steered, _ = score_mc(lm, items, settings, batch_size=8)
    for i, item in enumerate(items):
        one_base, one_steered, _ = score_mc(lm, [item], settings, batch_size=1)
        for together, alone in zip([base, *steered], [one_base, *one_steered], strict=True):
            assert together[i].sum_logprobs == pytest.approx(alone[0].sum_logprobs, abs=1e-4)
