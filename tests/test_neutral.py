"""Neutral-text side effects equal a direct steered forward with a plain log-softmax."""

from __future__ import annotations

import pytest
import torch

from archs import arch_lm
from linsteer.extract.read import left_pad, tokenize
from linsteer.extract.vector import SteeringVector
from linsteer.score.neutral import neutral_effects
from linsteer.steer.hooks import Steer, steering
from linsteer.steer.setting import Setting

TEXTS = ["The cat sat on the mat by the door.", "Rivers flow to the sea.", "A short line."]


def reference(lm, setting: Setting | None) -> tuple[float, float, torch.Tensor]:  # type: ignore[no-untyped-def]
    """(ppl, mean KL vs unsteered, log-probs) from full forwards, one text at a time."""
    nll = kl = 0.0
    count = 0
    for text in TEXTS:
        ids = left_pad(tokenize(lm, [text]), int(lm.tokenizer.pad_token_id)).input_ids
        with torch.no_grad():
            base = torch.log_softmax(lm.model(ids).logits[0, :-1].double(), -1)
            if setting is None:
                logp = base
            else:
                steer = Steer(setting.vector, (setting.layer,), setting.operator, setting.raw_strength())
                with steering(lm, steer):
                    logp = torch.log_softmax(lm.model(ids).logits[0, :-1].double(), -1)
        nll -= float(logp.gather(-1, ids[0, 1:].unsqueeze(-1)).sum())
        kl += float((base.exp() * (base - logp)).sum())
        count += ids.shape[1] - 1
    return float(torch.exp(torch.tensor(nll / count))), kl / count, torch.tensor(count)


def test_neutral_effects_equal_a_direct_log_softmax() -> None:
    lm = arch_lm("llama")
    gen = torch.Generator().manual_seed(1)
    vec = SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in range(lm.n_layers)},
                         {L: 3.0 for L in range(lm.n_layers)}, {})
    settings = [Setting(vec, 1, "add", 4.0), Setting(vec, 0, "project_scale", 2.0),
                Setting(vec, 2, "add", 0.0)]
    (ppl, kl0), effects, count = neutral_effects(lm, settings, TEXTS, batch_size=2)
    ref_ppl, _, ref_count = reference(lm, None)
    assert count == int(ref_count)
    assert kl0 == 0.0 and ppl == pytest.approx(ref_ppl, rel=1e-4)
    for setting, (s_ppl, s_kl) in zip(settings, effects, strict=True):
        r_ppl, r_kl, _ = reference(lm, setting)
        assert s_ppl == pytest.approx(r_ppl, rel=1e-4)
        assert s_kl == pytest.approx(r_kl, rel=1e-3, abs=1e-5)
    assert effects[0][1] > 1e-3  # the steered settings do move the distribution
    assert effects[2][1] == pytest.approx(0.0, abs=1e-5)  # strength 0 does not
