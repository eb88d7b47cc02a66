"""Tiny random-init models of every architecture linsteer promises to support.

Three blocks by default (so "before layer L" and "after layer L" both exist for L = 1), hidden
size 32, float32, the byte-level vocabulary of :mod:`tiny`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from linsteer.model.load import LoadedModel, wrap_model
from tiny import ARCHS, tiny_model, tiny_tokenizer

ALL_ARCHS = ARCHS
BLOCK_PATHS = {"gpt2": "transformer.h", "rwkv": "rwkv.blocks"}


def arch_model(arch: str, seed: int = 0, hidden: int = 32, layers: int = 3) -> PreTrainedModel:
    return tiny_model(arch, seed, hidden, layers)


def arch_lm(arch: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 3) -> LoadedModel:
    return wrap_model(arch_model(arch, seed, hidden, layers), tiny_tokenizer(), name=f"tiny-{arch}")


def model_folder(folder: Path, arch: str = "llama", hidden: int = 32, layers: int = 3) -> Path:
    """A tiny model saved as a folder ``load_model`` (and the CLI's ``--model``) accepts."""
    arch_model(arch, hidden=hidden, layers=layers).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
