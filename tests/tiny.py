"""Offline tiny tokenizer and random-init models shared by the test suite.

Nothing here touches the network. Import with ``from tiny import tiny_model, tiny_tokenizer``
(pytest puts ``tests/`` on ``sys.path``).

* ``tiny_tokenizer()``: byte-level tokenizer (every UTF-8 string round-trips; one token per byte,
  no merges) with ``<pad>`` (id 0), ``<s>`` (bos, id 1, prepended by ``add_special_tokens=True``),
  ``</s>`` (eos, id 2) and ``<unk>`` (id 3); ``padding_side="left"``. Vocabulary size 260.
* ``tiny_model(arch, seed)``: a 2-layer, hidden-size-32 random-init causal LM in float32 and eval
  mode, with the tokenizer's special-token ids in its config. ``arch``: llama, qwen2, gemma3
  (alternating sliding-window layers, window 8), gpt2, rwkv (recurrent: no position ids, ignores
  the attention mask).
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    RwkvConfig,
)

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
VOCAB_SIZE = 256 + len(SPECIALS)
ARCHS = ("llama", "qwen2", "gemma3", "gpt2", "mistral", "phi3", "rwkv")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level (one token per byte) fast tokenizer built offline, left padding."""
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    assert len(vocab) == VOCAB_SIZE
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B",
        special_tokens=[(BOS, vocab[BOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
    )


def arch_config(arch: str, hidden: int = 32, layers: int = 2) -> PretrainedConfig:
    """A tiny config of ``arch`` (llama, qwen2, mistral, phi3, gemma3, gpt2, rwkv)."""
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    attn = {"vocab_size": VOCAB_SIZE, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 2 * hidden,
            "max_position_embeddings": 512, **ids}
    simple = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig, "phi3": Phi3Config}
    if arch in simple:
        return simple[arch](**attn)
    if arch == "gemma3":  # alternating sliding-window (8) and full attention
        kinds = ["sliding_attention", "full_attention"] * layers
        return Gemma3TextConfig(**attn, head_dim=8, sliding_window=8, layer_types=kinds[:layers])
    if arch == "gpt2":
        return GPT2Config(vocab_size=VOCAB_SIZE, n_embd=hidden, n_layer=layers, n_head=4,
                          n_positions=512, **ids)
    if arch == "rwkv":
        return RwkvConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers,
                          attention_hidden_size=hidden, intermediate_size=2 * hidden,
                          context_length=512, **ids)
    raise ValueError(f"unknown tiny arch {arch!r}; choose one of {ARCHS}")


def tiny_model(arch: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 2) -> PreTrainedModel:
    """A deterministic (given ``seed``) random-init causal LM in float32, eval mode."""
    config = arch_config(arch, hidden, layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 0, 1, 2
    return model
