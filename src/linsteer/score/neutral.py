"""Side effects of steering on neutral text: perplexity and KL(unsteered ‖ steered) per setting."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import torch

from linsteer.extract.read import Batch, left_pad, tokenize
from linsteer.model.head import HeadOutput
from linsteer.model.load import LoadedModel
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting


def _all_neutral_texts() -> list[str]:
    texts: list[str] = json.loads(files("linsteer").joinpath("data/neutral.json").read_text())["texts"]
    return texts


def available_neutral_texts() -> int:
    """How many built-in neutral texts there are (``neutral_texts`` asks for at most this many)."""
    return len(_all_neutral_texts())


def neutral_texts(n: int) -> list[str]:
    return _all_neutral_texts()[: max(1, n)]


@dataclass
class _NeutralScorer:
    """Per-row summed NLL and summed KL(unsteered ‖ steered) over the real predicted tokens.

    The first call is the unsteered batch: it keeps that batch's next-token distribution ``p`` and
    its ``Σ p log p``. A steered copy's KL is then ``Σ p log p − Σ p·x + logsumexp(x)`` for its
    logits ``x``: one reduction over the vocabulary per pass, with no ``[rows, T, V]`` temporaries
    (the vocabulary is 262k wide for Gemma 3, where the older log-softmax form was most of the
    neutral-text time).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    base_p: torch.Tensor | None = None
    base_neg_entropy: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.from_head(HeadOutput(full=logits))

    def from_head(self, out: HeadOutput) -> torch.Tensor:
        batch = self.ids.shape[0]
        head = out.map(lambda t: t[:, :-1])  # position t predicts token t + 1
        copies, width = head.shape[0] // batch, head.shape[1]
        tgt = self.ids[:, 1:]
        valid = (self.mask[:, 1:] * self.mask[:, :-1]).bool()  # skip pads
        if self.base_p is None or self.base_neg_entropy is None:
            x = head.logits()
            lse = torch.logsumexp(x, dim=-1)
            picked = x.gather(-1, tgt.to(x.device).unsqueeze(-1)).squeeze(-1)
            logp = x - lse.unsqueeze(-1)
            self.base_p = logp.exp().reshape(batch * width, -1)
            self.base_neg_entropy = (self.base_p * logp.reshape(batch * width, -1)).sum(-1).cpu()
            nll = ((lse.cpu() - picked.cpu()) * valid).sum(-1).repeat(copies)
            return torch.stack([nll, torch.zeros_like(nll)], dim=-1)
        n = copies * batch * width
        positions = torch.arange(n)
        reduced = head.reduce(positions, tgt.reshape(-1).repeat(copies), self.base_p,
                              positions % (batch * width))
        assert reduced.cross is not None
        shape = (copies, batch, width)
        lse, picked = reduced.lse.cpu().view(shape), reduced.picked.cpu().view(shape)
        cross = reduced.cross.cpu().view(shape)
        nll = ((lse - picked) * valid).sum(-1)
        kl = ((self.base_neg_entropy.view(batch, width) - cross + lse) * valid).sum(-1)
        return torch.stack([nll.reshape(-1), kl.reshape(-1)], dim=-1)


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
