"""Which positions one forward call steers: the state a steering handle's model pre-hook keeps.

Positions are absolute token positions (the prompt is what the first forward of a generation
saw), so they stay right under the KV cache; padding is never touched. Everything here is
computed once per forward (never per layer) from host-side shapes: no step reads a device value
back, so a decoding step never synchronises with the device. The one exception is a forward
without a cache that may continue the last prompt (``generate(use_cache=False)``), whose prefix is
compared with it (once per forward, for positions other than ``"all"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from linsteer.steer.operators import Positions


@dataclass
class Step:
    """What the current forward call covers.

    ``keep`` is the position mask ``[B, T]`` on the input's device (None: every position of every
    row is steered, so a block hook is a plain add); ``on`` caches it per block device."""

    length: int = -1
    keep: torch.Tensor | None = None
    skip: bool = False  # no position of this forward is steered
    on: dict[torch.device, torch.Tensor] = field(default_factory=dict)

    def keep_on(self, device: torch.device) -> torch.Tensor | None:
        if self.keep is None or self.keep.device == device:
            return self.keep
        if device not in self.on:
            self.on[device] = self.keep.to(device, non_blocking=True)
        return self.on[device]


@dataclass
class PromptState:
    length: int | None = None  # padded prompt length P: absolute positions < P are the prompt
    ids: torch.Tensor | None = None
    pads: torch.Tensor | None = None  # [B] left-padding count of each row (on the input's device)
    total: int = 0  # tokens seen so far (for models without a mask or cache position)


def first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> torch.Tensor | None:
    value = kwargs.get(name)
    if value is None and name == "input_ids" and args and isinstance(args[0], torch.Tensor):
        value = args[0]
    return value if isinstance(value, torch.Tensor) else None


def past_length(args: tuple[Any, ...], kwargs: dict[str, Any], length: int, total: int) -> int:
    """Tokens before this call, read from host-side shapes where possible (no device sync)."""
    mask = kwargs.get("attention_mask")
    cache = kwargs.get("past_key_values", kwargs.get("cache"))
    cache_position = kwargs.get("cache_position")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return int(mask.shape[1]) - length
    if cache is not None and hasattr(cache, "get_seq_length"):
        try:
            return int(cache.get_seq_length())
        except ValueError:  # only state-space / linear-attention layers: no sequence length kept
            previous = getattr(cache, "has_previous_state", None)
            return total if callable(previous) and previous() else 0
    if isinstance(cache_position, torch.Tensor) and cache_position.numel() > 0:
        return int(cache_position.reshape(-1)[0])
    if kwargs.get("state") is not None:  # RWKV-style recurrent state
        return total
    return 0


def begin_forward(prompt: PromptState, positions: Positions, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> tuple[PromptState, Step]:
    """The prompt state after this forward's inputs, and the positions it steers."""
    ids = first_tensor(args, kwargs, "input_ids")
    ref = ids if ids is not None else kwargs.get("inputs_embeds")
    if ref is None:
        return prompt, Step()
    batch, length = int(ref.shape[0]), int(ref.shape[1])
    mask = kwargs.get("attention_mask")
    mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    past = past_length(args, kwargs, length, prompt.total)
    if past == 0 and positions != "all":  # "all" never needs the prompt's length or padding
        continuing = (
            ids is not None
            and prompt.ids is not None
            and prompt.length is not None
            and ids.shape[0] == prompt.ids.shape[0]
            and length > prompt.length
            and bool((ids[:, : prompt.length] == prompt.ids.to(ids.device)).all())
        )
        if not continuing:  # a new prompt (a no-cache generate step recomputes the old one)
            pads = None if mask is None or not isinstance(positions, tuple) else (
                mask[:, :length] == 0).sum(dim=1)
            prompt = PromptState(length, None if ids is None else ids.detach(), pads)
    prompt.total = past + length
    keep = _keep(prompt, positions, batch, past, length, mask, ref.device)
    return prompt, Step(length, keep if isinstance(keep, torch.Tensor) else None, skip=keep is False)


def _keep(prompt: PromptState, spec_pos: Positions, batch: int, past: int, length: int,
          mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | bool | None:
    """The ``[B, T]`` mask of positions to steer in this forward; None: all of them, False:
    none of them."""
    prompt_len = prompt.length if prompt.length is not None else length
    keep: torch.Tensor | None = None
    if spec_pos in ("prompt", "generated"):
        first_gen = prompt_len - past  # index of the first generated position in this call
        if (spec_pos == "prompt" and first_gen <= 0) or (spec_pos == "generated" and first_gen >= length):
            return False
        if 0 < first_gen < length:
            positions = torch.arange(past, past + length, device=device)
            inside = positions < prompt_len if spec_pos == "prompt" else positions >= prompt_len
            keep = inside.expand(batch, length)
    elif isinstance(spec_pos, tuple):
        positions = torch.arange(past, past + length, device=device)
        pads = prompt.pads
        pads = pads.to(device) if pads is not None and len(pads) == batch else torch.zeros(
            batch, dtype=torch.long, device=device)
        keep = torch.zeros((batch, length), dtype=torch.bool, device=device)
        for index in spec_pos:
            absolute = pads + index if index >= 0 else torch.full_like(pads, prompt_len + index)
            keep |= positions.unsqueeze(0) == absolute.unsqueeze(1)
    # A one-token step after the prompt is a real token (generate appends ones to the mask), so
    # a decoding step never reads the mask; a longer call, or a first one, uses it (padding).
    if mask is not None and (length > 1 or past == 0):
        token_mask = mask[:, past: past + length].to(device).bool()
        keep = token_mask if keep is None else keep & token_mask
    return keep
