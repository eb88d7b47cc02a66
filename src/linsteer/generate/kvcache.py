"""KV caches the chain-of-thought engine (:mod:`linsteer.generate.cot`) splices row by row: a
full-attention layer written in place into a buffer that grows by doubling (transformers'
``DynamicLayer`` concatenates, copying the whole cache at every step), and the helpers that build
a cache from per-layer ``(keys, values)`` and left-pad them. Every layer is a full layer, also on
sliding-window models: the mask, built from the columns, applies the window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

__all__ = ["GrowLayer", "cache_kvs", "left_pad_kv", "make_cache"]



class GrowLayer(DynamicLayer):
    """A full-attention cache layer written in place into a buffer that grows by doubling (a
    ``DynamicLayer`` concatenates, copying the whole cache at every step)."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None) -> None:
        super().__init__()
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0
        if keys is not None and values is not None:
            self._place(keys, values)

    def _place(self, keys: torch.Tensor, values: torch.Tensor, extra: int = 64) -> None:
        batch, heads, length, dim = keys.shape
        self._k = keys.new_zeros((batch, heads, length + extra, dim))
        self._v = values.new_zeros((batch, heads, length + extra, values.shape[-1]))
        self._k[:, :, :length] = keys
        self._v[:, :, :length] = values
        self._len = length
        self.device, self.is_initialized = keys.device, True
        self._views()

    def _views(self) -> None:
        assert self._k is not None and self._v is not None
        self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self._k is None or self._v is None:
            self._place(key_states, value_states)
            return key_states, value_states
        if self._len + n > self._k.shape[-2]:
            old_k, old_v = self._k[:, :, : self._len], self._v[:, :, : self._len]
            self._place(old_k, old_v, extra=max(n, self._len))
            assert self._k is not None and self._v is not None
        self._k[:, :, self._len: self._len + n] = key_states
        self._v[:, :, self._len: self._len + n] = value_states
        self._len += n
        self._views()
        return self._k[:, :, : self._len], self._v[:, :, : self._len]

    def get_seq_length(self) -> int:
        return self._len


def make_cache(kvs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowLayer
    cache.layers = [GrowLayer(k, v) for k, v in kvs]
    return cache


def cache_kvs(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_pad_kv(kvs: Sequence[tuple[torch.Tensor, torch.Tensor]], width: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if width == 0:
        return list(kvs)
    return [(torch.nn.functional.pad(k, (0, 0, width, 0)), torch.nn.functional.pad(v, (0, 0, width, 0)))
            for k, v in kvs]
