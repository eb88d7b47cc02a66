"""Side effects of steering on neutral text: perplexity and KL(unsteered ‖ steered) per setting."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import torch

from linsteer.activations import Batch, left_pad, tokenize
from linsteer.models import LoadedModel
from linsteer.replay import Replayer
from linsteer.setting import Setting


def neutral_texts(n: int) -> list[str]:
    data = json.loads(files("linsteer").joinpath("data/neutral.json").read_text())
    texts: list[str] = data["texts"]
    return texts[: max(1, n)]


@dataclass
class _NeutralScorer:
    """Per-row summed NLL and summed KL(unsteered ‖ steered) over the real predicted tokens."""

    ids: torch.Tensor
    mask: torch.Tensor
    base_logp: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        copies = logits.shape[0] // self.ids.shape[0]
        tgt = self.ids[:, 1:].repeat(copies, 1).to(logp.device)
        valid = (self.mask[:, 1:] * self.mask[:, :-1]).repeat(copies, 1).bool().to(logp.device)  # skip pads
        nll = -(logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * valid).sum(-1)
        if self.base_logp is None:
            self.base_logp = logp
            kl = torch.zeros_like(nll)
        else:
            base = self.base_logp.repeat(copies, 1, 1)
            kl = ((base.exp() * (base - logp)).sum(-1) * valid).sum(-1)
        return torch.stack([nll, kl], dim=-1).cpu()


def neutral_effects(
    lm: LoadedModel, settings: Sequence[Setting], texts: Sequence[str], batch_size: int = 4
) -> tuple[tuple[float, float], list[tuple[float, float]], int]:
    """(ppl, mean KL) unsteered and for each setting, over ``texts``; and the tokens counted."""
    ids = tokenize(lm, texts)
    pad = int(lm.tokenizer.pad_token_id)
    replayer = Replayer(lm, max_rows=8)
    base_tot = torch.zeros(2)
    tot = torch.zeros((len(settings), 2))
    count = 0
    for start in range(0, len(ids), batch_size):
        batch: Batch = left_pad(ids[start: start + batch_size], pad)
        width = batch.input_ids.shape[1]
        scorer = _NeutralScorer(batch.input_ids, batch.attention_mask)
        base, steered = replayer.run(batch, settings, width, scorer)
        base_tot += base.sum(0)
        for j, s in enumerate(steered):
            tot[j] += s.sum(0)
        count += int(((batch.attention_mask[:, 1:] * batch.attention_mask[:, :-1])).sum())

    def pk(v: torch.Tensor) -> tuple[float, float]:
        return float(torch.exp(v[0] / count)), float(v[1] / count)

    return pk(base_tot), [pk(tot[j]) for j in range(len(settings))], count
