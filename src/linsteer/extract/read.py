"""Batched, padding-aware reading of the residual stream.

Forward hooks on the decoder blocks capture each asked-for layer (layer ``L`` = output of block
``L``, see :mod:`linsteer.model.layers`) and reduce it to one vector per prompt on the spot; the hook of
the deepest asked-for layer then stops the forward, so later blocks, the final norm and the LM
head (over half the FLOPs for Gemma 3's 262k vocabulary) are never computed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.model.layers import LAYER_CONVENTION, check_layers, hidden_of, is_recurrent
from linsteer.model.load import LoadedModel
from linsteer.version import __version__

Position = Literal["last", "mean"] | int


class _StopForward(Exception):
    """Raised by the deepest reading hook: nothing after it needs computing."""


@dataclass
class Batch:
    """Left-padded model inputs for a list of prompts."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor  # [B, T], 1 = real token (what steering may touch)
    lengths: list[int]
    position_ids: torch.Tensor | None = None  # explicit positions (e.g. options sharing a prompt)
    mask_4d: torch.Tensor | None = None  # [B, 1, T, T] bool: who may attend to whom

    def model_kwargs(self, lm: LoadedModel) -> dict[str, torch.Tensor]:
        kwargs = {"input_ids": self.input_ids.to(lm.device)}
        if not is_recurrent(lm.model):
            mask = self.attention_mask.to(lm.device)
            kwargs["attention_mask"] = mask if self.mask_4d is None else self.mask_4d.to(lm.device)
            # Positions count real tokens only, so a left-padded row sees the same positions as
            # the same prompt alone (generate() does the same).
            positions = self.position_ids
            kwargs["position_ids"] = ((mask.long().cumsum(-1) - 1).clamp(min=0) if positions is None
                                      else positions.to(lm.device))
        return kwargs


def left_pad(token_ids: Sequence[Sequence[int]], pad_id: int) -> Batch:
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return Batch(input_ids, mask, [len(ids) for ids in token_ids])


def tokenize(lm: LoadedModel, prompts: Sequence[str]) -> list[list[int]]:
    encoded = lm.tokenizer(list(prompts), add_special_tokens=True)
    ids: list[list[int]] = [list(x) for x in encoded["input_ids"]]
    for prompt, row in zip(prompts, ids, strict=True):
        if not row:
            raise LinsteerError(f"prompt {prompt[:40]!r} tokenises to nothing; remove it")
    return ids


def batches_by_length(
    lengths: Sequence[int], batch_size: int, exact: bool
) -> list[list[int]]:
    """Group prompt indices into batches of similar length (identical length when ``exact``)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < batch_size and (
            not exact or lengths[out[-1][0]] == lengths[i]
        ):
            out[-1].append(i)
        else:
            out.append([i])
    return out


@dataclass
class _Prepared:
    """One batch's model inputs and reading constants, on the model's device, made before any
    forward of its chunk runs (pinned host memory, non-blocking copies: nothing in the loop waits
    for the device). ``at(device)`` gives the same on a block's device (models split over
    devices), copied once per batch and device."""

    kwargs: dict[str, torch.Tensor]
    rows: torch.Tensor  # [B] prompt indices into the result
    count: int  # real tokens except each row's first (the token-norm denominator), from the host
    tensors: dict[str, torch.Tensor]  # "norm" and "sink" masks [B, T]; "weights" ("mean"); "index"
    on: dict[torch.device, dict[str, torch.Tensor]] = field(default_factory=dict)

    def at(self, device: torch.device) -> dict[str, torch.Tensor]:
        first = next(iter(self.tensors.values()))
        if first.device == device:
            return self.tensors
        if device not in self.on:
            self.on[device] = {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}
        return self.on[device]


def _token_index(position: int, width: int, lengths: Sequence[int]) -> list[int]:
    index = [width - n + position if position >= 0 else width + position for n in lengths]
    if any(i < width - n or i >= width for i, n in zip(index, lengths, strict=True)):
        raise LinsteerError(f"token position {position} is outside a prompt of {min(lengths)} tokens")
    return index


def _prepare(lm: LoadedModel, batch: Batch, rows: Sequence[int], position: Position) -> _Prepared:
    """Everything a batch's reading hooks need, worked out on the host once per batch."""
    mask = batch.attention_mask
    width, lengths = mask.shape[1], batch.lengths
    first = torch.tensor([width - n if n else 0 for n in lengths], dtype=torch.long)
    sink = torch.zeros_like(mask, dtype=torch.bool)
    sink[torch.arange(len(lengths)), first] = torch.tensor([n > 0 for n in lengths])
    host = {"norm": mask.bool() & ~sink, "sink": sink}
    if position == "mean":
        keep = mask.clone()
        keep[torch.arange(len(lengths)), first] = torch.tensor([int(n == 1) for n in lengths])
        host["weights"] = keep.to(torch.float32).unsqueeze(-1)  # the sink only when alone
    elif isinstance(position, int):
        host["index"] = torch.tensor(_token_index(position, width, lengths), dtype=torch.long)
    host["rows"] = torch.tensor(list(rows), dtype=torch.long)
    host["input_ids"] = batch.input_ids
    padded = min(lengths) != max(lengths)
    if padded and not is_recurrent(lm.model):
        # positions count real tokens only, so a left-padded row sees the positions it has alone
        host["attention_mask"] = mask
        host["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    device = lm.device
    pin = device.type == "cuda"
    on = {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) for k, v in host.items()}
    names: tuple[str, ...] = ("input_ids", "attention_mask", "position_ids")
    kwargs = {k: on.pop(k) for k in names if k in on}
    # no padding: no mask, so attention takes its plain causal (fastest) kernel
    return _Prepared(kwargs, on.pop("rows"), sum(max(n - 1, 0) for n in lengths), on)


def _reduce(hidden: torch.Tensor, position: Position, consts: dict[str, torch.Tensor]) -> torch.Tensor:
    """One vector per row from ``[B, T, d]`` hidden states (left padding)."""
    if position == "last":
        return hidden[:, -1].float()
    if position == "mean":
        weights = consts["weights"]
        return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, consts["index"]].float()


@dataclass
class _Reader:
    """Forward hooks that reduce each asked-for layer to one vector per prompt.

    Everything stays on the model's device while batches run (no host copy or sync inside the
    loop): vectors go into ``acts`` by row index; per layer, the token-norm sums of real tokens
    (sink excluded) and of the sink tokens accumulate in ``sums`` ``[slots, 2]`` (float64; a
    non-finite sum flags NaN/inf), read once at the end. A hook is a reduction, a norm and two
    masked sums: the masks are made once per batch."""

    position: Position
    deepest: int
    n_slots: int
    acts: torch.Tensor  # [n, slots, d] float32 on the model's device
    batch: _Prepared | None = None
    count: int = 0
    sums: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.sums = torch.zeros((self.n_slots, 2), dtype=torch.float64, device=self.acts.device)

    def hook(self, slot: int, layer: int) -> Callable[[torch.nn.Module, object, object], None]:
        def fn(module: torch.nn.Module, args: object, output: object) -> None:
            hidden, batch = hidden_of(output), self.batch
            assert batch is not None
            consts = batch.at(hidden.device)
            self.acts[batch.rows, slot] = _reduce(hidden, self.position, consts).to(self.acts.device)
            # one pass over the hidden states: the per-token norms also reveal NaN/inf
            norms = torch.linalg.vector_norm(hidden, dim=-1, dtype=torch.float32)
            sums = torch.stack([torch.where(consts["norm"], norms, 0.0).sum(dtype=torch.float64),
                                torch.where(consts["sink"], norms, 0.0).sum(dtype=torch.float64)])
            self.sums[slot] += sums.to(self.sums.device)
            if layer == self.deepest:
                raise _StopForward

        return fn

    def run(self, lm: LoadedModel, batch: _Prepared) -> None:
        self.batch = batch
        self.count += batch.count
        try:
            with torch.inference_mode():
                lm.model(**batch.kwargs, use_cache=False)
        except _StopForward:
            pass


def _chunks(prompts: Sequence[str], batch_size: int, exact: bool) -> list[list[int]]:
    """Prompt indices, longest text first, in chunks to tokenise one at a time: a first small
    chunk (so the device starts at once), then four batches' worth each. Batches are formed by
    token length within a chunk; ``exact`` (recurrent models) needs one chunk."""
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    if exact:
        return [order]
    step = 4 * batch_size
    return [order[:batch_size]] + [order[s: s + step] for s in range(batch_size, len(order), step)]


def read_activations(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    position: Position = "last",
    batch_size: int = 16,
    prompt_format: str = "raw",
    cache: str | Path | None = None,
    progress: bool = True,
    token_ids: Sequence[Sequence[int]] | None = None,
) -> ActivationSet:
    """Read the residual stream of ``prompts`` at ``layers`` (default: all) and ``position``.

    ``position``: ``"last"`` (the last prompt token), ``"mean"`` (mean over prompt tokens, the
    first/sink token excluded) or an integer index into the unpadded prompt (negative from the
    end). ``token_ids`` (one list per prompt) skips tokenisation. With ``cache`` (a folder), the
    result is stored under a key of the model fingerprint,
    prompts, labels, layers, position, format and dtype, and read back on the next call.
    """
    if not prompts:
        raise LinsteerError("the prompt list is empty; give at least one prompt")
    if position not in ("last", "mean") and not isinstance(position, int):
        raise LinsteerError(f"unknown position {position!r}; use 'last', 'mean' or an integer")
    labels = list(labels) if labels is not None else [""] * len(prompts)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(prompts))]
    if not len(labels) == len(ids) == len(prompts):
        raise LinsteerError("labels and ids must have one entry per prompt")
    if batch_size < 1:
        raise LinsteerError(f"batch_size must be >= 1, got {batch_size}")
    layer_list = check_layers(list(layers) if layers is not None else list(range(lm.n_layers)),
                              lm.n_layers)

    meta = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "layer_convention": LAYER_CONVENTION,
        "position": str(position),
        "prompt_format": prompt_format,
        "dtype": str(lm.dtype).replace("torch.", ""),
        "linsteer_version": __version__,
    }
    cache_file = None
    if cache is not None:
        key_src = json.dumps([meta["fingerprint"], meta["position"], meta["prompt_format"],
                              meta["dtype"], layer_list, list(prompts), labels, ids])
        key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
        cache_file = Path(cache) / f"acts-{key}.safetensors"
        if cache_file.is_file():
            return ActivationSet.load(cache_file)

    n, d = len(prompts), lm.hidden_size
    pad_id = int(lm.tokenizer.pad_token_id)
    exact = is_recurrent(lm.model)
    given = token_ids
    if given is not None and len(given) != n:
        raise LinsteerError(f"{len(given)} token id lists for {n} prompts")
    token_ids = [list(t) for t in given] if given is not None else [[] for _ in range(n)]

    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="reading activations", unit="prompt", disable=not progress)
    reader = _Reader(position, layer_list[-1], len(layer_list),
                     torch.zeros((n, len(layer_list), d), dtype=torch.float32, device=lm.device))
    handles = [
        lm.blocks.modules[layer].register_forward_hook(reader.hook(slot, layer))
        for slot, layer in enumerate(layer_list)
    ]
    try:
        for chunk in _chunks(prompts, batch_size, exact):
            # tokenised chunk by chunk: the next chunk's tokenisation overlaps the device's work
            if given is None:
                for i, ids_i in zip(chunk, tokenize(lm, [prompts[i] for i in chunk]), strict=True):
                    token_ids[i] = ids_i
            groups = [[chunk[j] for j in local] for local in
                      batches_by_length([len(token_ids[i]) for i in chunk], batch_size, exact)]
            ready = [_prepare(lm, left_pad([token_ids[i] for i in rows], pad_id), rows, position)
                     for rows in groups]
            for rows, batch in zip(groups, ready, strict=True):
                reader.run(lm, batch)
                bar.update(len(rows))
    finally:
        for handle in handles:
            handle.remove()
    bar.close()
    # host-only work after the last forward is queued: on a GPU it overlaps the device's work
    meta["prompts_sha256"] = hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
    sums = reader.sums.cpu()  # the one copy back: everything at once
    finite = torch.isfinite(sums.sum(dim=1))
    if not bool(finite.all()):
        layer = layer_list[int((~finite).nonzero()[0, 0])]
        raise LinsteerError(
            f"non-finite activations at layer {layer} (NaN/inf; bf16 overflow is a "
            "common cause: try --dtype fp32)"
        )
    acts = reader.acts.cpu()
    norm_sum = sums[:, 0]
    token_norms = norm_sum / reader.count if reader.count else torch.full_like(norm_sum, math.nan)
    result = ActivationSet(
        acts=acts,
        layers=layer_list,
        labels=labels,
        ids=ids,
        token_norms=token_norms,
        n_tokens=[len(t) for t in token_ids],
        meta=meta,
    )
    if cache_file is not None:
        result.save(cache_file)
    return result


def parse_position(text: str | int) -> Position:
    """``last``, ``mean`` or an integer token index (the one parser for CLI and config)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if text in ("last", "mean"):
        return "last" if text == "last" else "mean"
    try:
        return int(str(text))
    except ValueError as exc:
        raise LinsteerError(f"bad position {text!r}; use last, mean or an integer token index") from exc
