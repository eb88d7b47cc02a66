"""Batched, padding-aware reading of the residual stream.

Forward hooks on the decoder blocks capture each asked-for layer (layer ``L`` = output of block
``L``, see :mod:`linsteer.layers`) and reduce it to one vector per prompt on the spot; the hook of
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
from safetensors.torch import load_file

from linsteer.errors import LinsteerError
from linsteer.io import save_tensors
from linsteer.layers import LAYER_CONVENTION, check_layers, hidden_of, is_recurrent
from linsteer.models import LoadedModel
from linsteer.version import __version__

Position = Literal["last", "mean"] | int


@dataclass
class ActivationSet:
    """Activations ``[n, layers, d]`` (float32) of ``n`` prompts, with labels and metadata.

    ``token_norms[i]`` is the mean L2 norm of the residual stream at ``layers[i]`` over every real
    prompt token except the first of each prompt (the attention sink: Gemma 3's BOS has norm
    ~100k against ~1k-20k elsewhere), the scale that ``add`` strengths are expressed in.
    """

    acts: torch.Tensor
    layers: list[int]
    labels: list[str]
    ids: list[str]
    token_norms: torch.Tensor
    n_tokens: list[int]
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, n_layers, _ = self.acts.shape
        if n_layers != len(self.layers):
            raise LinsteerError(f"activations have {n_layers} layers but {len(self.layers)} named")
        if not len(self.labels) == len(self.ids) == len(self.n_tokens) == n:
            raise LinsteerError("labels, ids and token counts must have one entry per prompt")

    @property
    def hidden_size(self) -> int:
        return int(self.acts.shape[2])

    def layer(self, layer: int) -> torch.Tensor:
        """``[n, d]`` activations at model layer ``layer``."""
        if layer not in self.layers:
            raise LinsteerError(f"layer {layer} was not read; this set has layers {self.layers}")
        return self.acts[:, self.layers.index(layer)]

    def mask(self, label: str) -> torch.Tensor:
        return torch.tensor([lab == label for lab in self.labels], dtype=torch.bool)

    def subset(self, index: Sequence[int]) -> ActivationSet:
        idx = list(index)
        return ActivationSet(
            acts=self.acts[idx],
            layers=list(self.layers),
            labels=[self.labels[i] for i in idx],
            ids=[self.ids[i] for i in idx],
            token_norms=self.token_norms.clone(),
            n_tokens=[self.n_tokens[i] for i in idx],
            meta=dict(self.meta),
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta)
        meta["linsteer.layers"] = json.dumps(self.layers)
        meta["linsteer.labels"] = json.dumps(self.labels)
        meta["linsteer.ids"] = json.dumps(self.ids)
        meta["linsteer.n_tokens"] = json.dumps(self.n_tokens)
        save_tensors(path, {"acts": self.acts, "token_norms": self.token_norms}, meta)

    @classmethod
    def load(cls, path: str | Path) -> ActivationSet:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise LinsteerError(f"activation file not found: {path}")
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
        tensors = load_file(str(path))
        return cls(
            acts=tensors["acts"],
            layers=json.loads(meta.pop("linsteer.layers")),
            labels=json.loads(meta.pop("linsteer.labels")),
            ids=json.loads(meta.pop("linsteer.ids")),
            token_norms=tensors["token_norms"],
            n_tokens=json.loads(meta.pop("linsteer.n_tokens")),
            meta=meta,
        )


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


def _reduce(hidden: torch.Tensor, mask: torch.Tensor, position: Position,
            lengths: Sequence[int] | None = None) -> torch.Tensor:
    """One vector per row from ``[B, T, d]`` hidden states under a left-padding ``mask``.

    ``lengths`` (the real token count of each row, known on the host) lets an integer position
    be checked without reading the mask back from the device."""
    if position == "last":
        return hidden[:, -1].float()
    if position == "mean":
        keep = mask.clone()
        first = mask.argmax(dim=1)  # first real token of each (left-padded) row
        rows = torch.arange(mask.shape[0], device=mask.device)
        keep[rows, first] = (mask.sum(dim=1) == 1).to(keep.dtype)  # drop the sink unless alone
        weights = keep.to(torch.float32).unsqueeze(-1)
        return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1)
    if isinstance(position, int):
        width = mask.shape[1]
        host_lengths = list(lengths) if lengths is not None else [int(n) for n in mask.sum(dim=1)]
        index_list = [width - n + position if position >= 0 else width + position
                      for n in host_lengths]
        if any(i < width - n or i >= width for i, n in zip(index_list, host_lengths, strict=True)):
            raise LinsteerError(
                f"token position {position} is outside a prompt of {min(host_lengths)} tokens"
            )
        rows = torch.arange(mask.shape[0], device=hidden.device)
        return hidden[rows, torch.tensor(index_list, device=hidden.device)].float()
    raise LinsteerError(f"unknown position {position!r}; use 'last', 'mean' or an integer index")


@dataclass
class _Reader:
    """Forward hooks that reduce each asked-for layer to one vector per prompt.

    Everything stays on the model's device while batches run (no host copy or sync inside the
    loop): vectors go into ``acts`` by row index, token-norm sums and a non-finite flag per layer
    accumulate in device tensors, read once at the end."""

    position: Position
    deepest: int
    n_slots: int
    acts: torch.Tensor  # [n, slots, d] float32 on the model's device
    mask: torch.Tensor = field(default_factory=lambda: torch.ones(0, 0))
    rows: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    lengths: list[int] = field(default_factory=list)
    norm_sum: torch.Tensor = field(init=False)
    norm_count: torch.Tensor = field(init=False)
    bad: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        device = self.acts.device
        self.norm_sum = torch.zeros(self.n_slots, dtype=torch.float64, device=device)
        self.norm_count = torch.zeros(self.n_slots, dtype=torch.float64, device=device)
        self.bad = torch.zeros(self.n_slots, dtype=torch.bool, device=device)

    def set_batch(self, batch: Batch, rows: Sequence[int]) -> None:
        device = self.acts.device
        self.mask = batch.attention_mask.to(device, non_blocking=True)
        self.rows = torch.tensor(list(rows), dtype=torch.long).to(device, non_blocking=True)
        self.lengths = list(batch.lengths)

    def hook(self, slot: int, layer: int) -> Callable[[torch.nn.Module, object, object], None]:
        def fn(module: torch.nn.Module, args: object, output: object) -> None:
            hidden, mask = hidden_of(output), self.mask
            self.acts[self.rows, slot] = _reduce(hidden, mask, self.position, self.lengths).to(
                self.acts.device)
            # one pass over the hidden states: the per-token norms also reveal NaN/inf
            norms = torch.linalg.vector_norm(hidden, dim=-1, dtype=torch.float32)
            real = mask.bool()
            self.bad[slot] |= ~torch.isfinite(torch.where(real, norms, 0.0)).all()
            sink = torch.ones_like(real)
            sink[torch.arange(mask.shape[0], device=mask.device), mask.argmax(dim=1)] = False
            real = real & sink  # skip the sink token
            self.norm_sum[slot] += torch.where(real, norms, 0.0).sum(dtype=torch.float64)
            self.norm_count[slot] += real.sum()
            if layer == self.deepest:
                raise _StopForward

        return fn


def _chunks(prompts: Sequence[str], batch_size: int, exact: bool) -> list[list[int]]:
    """Prompt indices, longest text first, in chunks to tokenise one at a time: a first small
    chunk (so the device starts at once), then four batches' worth each. Batches are formed by
    token length within a chunk; ``exact`` (recurrent models) needs one chunk."""
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    if exact:
        return [order]
    step = 4 * batch_size
    return [order[:batch_size]] + [order[s: s + step] for s in range(batch_size, len(order), step)]


def _read_batch(lm: LoadedModel, reader: _Reader, batch: Batch, rows: list[int]) -> None:
    reader.set_batch(batch, rows)
    kwargs = batch.model_kwargs(lm)
    if min(batch.lengths) == max(batch.lengths) and "attention_mask" in kwargs:
        # no padding: no mask, so attention takes its plain causal (fastest) kernel
        kwargs = {"input_ids": kwargs["input_ids"]}
    try:
        with torch.inference_mode():
            lm.model(**kwargs, use_cache=False)
    except _StopForward:
        pass


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
    key_src = json.dumps([meta["fingerprint"], meta["position"], meta["prompt_format"],
                          meta["dtype"], layer_list, list(prompts), labels, ids])
    meta["prompts_sha256"] = hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
    cache_file = None
    if cache is not None:
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
            for local in batches_by_length([len(token_ids[i]) for i in chunk], batch_size, exact):
                rows = [chunk[j] for j in local]
                _read_batch(lm, reader, left_pad([token_ids[i] for i in rows], pad_id), rows)
                bar.update(len(rows))
    finally:
        for handle in handles:
            handle.remove()
    bar.close()
    bad = reader.bad.cpu()  # the one copy back: everything at once
    if bool(bad.any()):
        layer = layer_list[int(bad.nonzero()[0, 0])]
        raise LinsteerError(
            f"non-finite activations at layer {layer} (NaN/inf; bf16 overflow is a "
            "common cause: try --dtype fp32)"
        )
    acts = reader.acts.cpu()
    norm_sum, norm_count = reader.norm_sum.cpu(), reader.norm_count.cpu()
    token_norms = torch.where(norm_count > 0, norm_sum / norm_count.clamp(min=1), math.nan)
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
