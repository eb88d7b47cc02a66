"""The LM head as the model applies it (soft-capping included), kept off PyTorch's slow path."""

from __future__ import annotations

import torch

from archs import arch_lm
from linsteer.model.head import HeadOutput, contiguous_head, head_logits, output_head


def test_head_logits_are_the_models_own_logits_softcap_included() -> None:
    lm = arch_lm("gemma3")
    lm.model.config.final_logit_softcapping = 2.0  # type: ignore[union-attr]  # tiny logits: a cap that bites
    head = output_head(lm.model)
    assert head is not None
    seen: list[torch.Tensor] = []
    probe = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    ids = torch.randint(3, 60, (2, 7))
    try:
        with torch.inference_mode():
            own = lm.model(input_ids=ids).logits.float()
            mine = head_logits(lm, seen[0])
    finally:
        probe.remove()
    assert own.abs().max() < 2.0  # the cap is in the model's own logits...
    torch.testing.assert_close(mine, own)  # ...and in head_logits
    lm.model.config.final_logit_softcapping = None  # type: ignore[union-attr]
    with torch.inference_mode():
        assert not torch.allclose(head_logits(lm, seen[0]), own)


def test_contiguous_head_feeds_a_frozen_head_a_contiguous_input_and_leaves_no_hook() -> None:
    lm = arch_lm("llama")
    for p in lm.model.parameters():
        p.requires_grad_(False)  # the case PyTorch's CPU linear is slow on (a non-contiguous 3-D input)
    head = output_head(lm.model)
    assert head is not None
    ids = torch.randint(3, 60, (3, 9))

    def forward() -> tuple[torch.Tensor, bool]:
        seen: list[bool] = []
        probe = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
        try:
            with torch.inference_mode():
                logits = lm.model(input_ids=ids, logits_to_keep=2).logits
        finally:
            probe.remove()
        return logits, seen[0]

    plain, plain_contiguous = forward()
    with contiguous_head(lm.model):
        fixed, fixed_contiguous = forward()
    assert not plain_contiguous and fixed_contiguous  # logits_to_keep slices; inside, it is copied
    torch.testing.assert_close(plain, fixed)
    assert not head._forward_pre_hooks  # removed on exit: the model as it was


def test_blocked_reduce_equals_the_materialised_logits_softcap_included() -> None:
    """``HeadOutput.reduce`` (the head block by block over vocabulary and positions) gives the
    logsumexp, the chosen logits and the cross term of the full logits, with a soft cap."""
    lm = arch_lm("gemma3")
    head = output_head(lm.model)
    assert head is not None and head.weight.shape[0] > 40  # type: ignore[union-attr]
    lm.model.config.final_logit_softcapping = 3.0  # type: ignore[union-attr]
    try:
        gen = torch.Generator().manual_seed(0)
        hidden = torch.randn(3, 7, int(head.weight.shape[1]), generator=gen)  # type: ignore[union-attr]
        out = HeadOutput(lm, hidden=hidden)
        full = out.logits().reshape(21, -1)
        vocab = full.shape[-1]
        pos = torch.randint(0, 21, (30,), generator=gen)
        tok = torch.randint(0, vocab, (30,), generator=gen)
        probs = torch.softmax(torch.randn(5, vocab, generator=gen), -1)
        index = torch.randint(0, 5, (21,), generator=gen)
        got = out.reduce(pos, tok, probs, index, vocab_block=13, position_block=4)
        assert got.cross is not None
        torch.testing.assert_close(got.lse, torch.logsumexp(full, -1))
        torch.testing.assert_close(got.picked, full[pos, tok])
        torch.testing.assert_close(got.cross, (full * probs[index]).sum(-1))
        # the materialised path (logits given) answers the same
        again = HeadOutput(full=full).reduce(pos, tok, probs, index)
        assert again.cross is not None
        torch.testing.assert_close(again.lse, got.lse)
        torch.testing.assert_close(again.picked, got.picked)
        torch.testing.assert_close(again.cross, got.cross)
    finally:
        lm.model.config.final_logit_softcapping = None  # type: ignore[union-attr]


def test_blocked_head_gives_the_same_logits_and_restores_the_head() -> None:
    from linsteer.model.head import VOCAB_BLOCK, blocked_head

    torch.manual_seed(0)
    for bias in (False, True):
        head = torch.nn.Linear(48, 2 * VOCAB_BLOCK + 123, bias=bias)  # a last block that is partial
        model = torch.nn.Module()
        model.get_output_embeddings = lambda head=head: head  # type: ignore[assignment,method-assign]
        x = torch.randn(3, 5, 48)[:, -2:]  # the non-contiguous slice logits_to_keep makes
        plain, plain_flat = head(x), head(x[:, -1])
        with torch.inference_mode(), blocked_head(model):
            assert "forward" in vars(head)  # the blocked forward is in place
            blocked = head(x)
            flat = head(x[:, -1])
        assert blocked.shape == plain.shape and torch.equal(blocked, plain)
        assert torch.equal(flat, plain_flat)
        assert "forward" not in vars(head)  # restored on exit
    small = torch.nn.Linear(8, 100)
    tiny = torch.nn.Module()
    tiny.get_output_embeddings = lambda: small  # type: ignore[assignment,method-assign]
    with blocked_head(tiny):
        assert "forward" not in vars(small)  # two blocks or fewer: the plain head
