"""Tiny random-init models of every architecture linsteer promises to support.

Three blocks each (so "before layer L" and "after layer L" both exist for L = 1), hidden size 32,
float32, the byte-level vocabulary of :mod:`tiny`.
"""

from __future__ import annotations

import torch
import transformers as tf
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from linsteer.models import LoadedModel, wrap_model
from tiny import VOCAB_SIZE, tiny_tokenizer

ALL_ARCHS = ("llama", "qwen2", "gemma3", "gpt2", "mistral", "phi3", "rwkv")
IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
BLOCK_PATHS = {"gpt2": "transformer.h", "rwkv": "rwkv.blocks"}


def arch_config(arch: str, hidden: int = 32, layers: int = 3) -> PretrainedConfig:
    attn = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 2 * hidden,
            "max_position_embeddings": 256, "vocab_size": VOCAB_SIZE, **IDS}
    if arch == "llama":
        return tf.LlamaConfig(**attn)
    if arch == "qwen2":
        return tf.Qwen2Config(**attn)
    if arch == "mistral":
        return tf.MistralConfig(**attn)
    if arch == "phi3":
        return tf.Phi3Config(**attn)
    if arch == "gemma3":
        kinds = ["sliding_attention", "full_attention"] * layers
        return tf.Gemma3TextConfig(**attn, head_dim=8, sliding_window=8, layer_types=kinds[:layers])
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB_SIZE, n_embd=hidden, n_layer=layers, n_head=4,
                             n_positions=256, **IDS)
    if arch == "rwkv":
        return tf.RwkvConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers,
                             attention_hidden_size=hidden, intermediate_size=2 * hidden,
                             context_length=256, **IDS)
    raise ValueError(arch)


def arch_model(arch: str, seed: int = 0, hidden: int = 32, layers: int = 3) -> PreTrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(arch_config(arch, hidden, layers), dtype=torch.float32)
    model.eval()
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 0, 1, 2
    return model


def arch_lm(arch: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 3) -> LoadedModel:
    return wrap_model(arch_model(arch, seed, hidden, layers), tiny_tokenizer(), name=f"tiny-{arch}")
