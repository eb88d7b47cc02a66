"""Tiny configs of every causal-LM family the architecture matrix checks (tests/test_arch_matrix.py).

Three blocks, hidden size 32, 4 heads (2 KV heads, head dim 8), the byte vocabulary of :mod:`tiny`.
Hybrid stacks put a different kind of block at each depth (e.g. Jamba: Mamba, attention + MoE,
Mamba), so "before L" and "after L" cross a kind boundary. State-space layers use the
transformers slow path (pure torch: no kernels needed on CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import transformers as tf
from transformers import PretrainedConfig

from tiny import VOCAB_SIZE, arch_config

H, L = 32, 3
IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
ATTN: dict[str, Any] = {"vocab_size": VOCAB_SIZE, "hidden_size": H, "num_hidden_layers": L,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 2 * H,
                        "max_position_embeddings": 256, **IDS}
MOE: dict[str, Any] = {"num_experts": 4, "num_experts_per_tok": 2}
SSM2: dict[str, Any] = {"mamba_n_heads": 8, "mamba_d_head": 8, "mamba_n_groups": 1, "mamba_d_state": 8,
                        "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 16}


def _cfg(name: str, **extra: Any) -> Callable[[], PretrainedConfig]:
    def make() -> PretrainedConfig:
        return getattr(tf, name)(**{**ATTN, **extra})
    return make


def _plain(arch: str) -> Callable[[], PretrainedConfig]:
    return lambda: arch_config(arch, H, L)


# name -> (config factory, kind). Kind "attention": every block attends; "recurrent": none does;
# "hybrid": attention and state-space / linear-attention / convolution blocks interleaved.
MATRIX: dict[str, tuple[Callable[[], PretrainedConfig], str]] = {
    "llama": (_plain("llama"), "attention"),
    "mistral": (_plain("mistral"), "attention"),
    "qwen2": (_plain("qwen2"), "attention"),
    "qwen3": (_cfg("Qwen3Config", head_dim=8), "attention"),
    "qwen2_moe": (_cfg("Qwen2MoeConfig", **MOE, moe_intermediate_size=H, shared_expert_intermediate_size=H),
                  "attention"),
    "qwen3_moe": (_cfg("Qwen3MoeConfig", **MOE, moe_intermediate_size=H, head_dim=8), "attention"),
    "mixtral": (_cfg("MixtralConfig", num_local_experts=4, num_experts_per_tok=2), "attention"),
    "olmoe": (_cfg("OlmoeConfig", **MOE), "attention"),
    "olmo2": (_cfg("Olmo2Config"), "attention"),
    "gemma2": (_cfg("Gemma2Config", head_dim=8, sliding_window=8), "attention"),
    "gemma3": (_plain("gemma3"), "attention"),
    "phi3": (_plain("phi3"), "attention"),
    "gpt2": (_plain("gpt2"), "attention"),
    "gpt_neox": (lambda: tf.GPTNeoXConfig(vocab_size=VOCAB_SIZE, hidden_size=H, num_hidden_layers=L,
                                          num_attention_heads=4, intermediate_size=2 * H,
                                          max_position_embeddings=256, **IDS), "attention"),
    "opt": (lambda: tf.OPTConfig(vocab_size=VOCAB_SIZE, hidden_size=H, num_hidden_layers=L,
                                 num_attention_heads=4, ffn_dim=2 * H, word_embed_proj_dim=H,
                                 max_position_embeddings=256, **IDS), "attention"),
    "falcon": (lambda: tf.FalconConfig(vocab_size=VOCAB_SIZE, hidden_size=H, num_hidden_layers=L,
                                       num_attention_heads=4, new_decoder_architecture=True,
                                       num_kv_heads=2, **IDS), "attention"),
    "granite": (_cfg("GraniteConfig"), "attention"),
    "granitemoe": (_cfg("GraniteMoeConfig", num_local_experts=4, num_experts_per_tok=2), "attention"),
    "smollm3": (_cfg("SmolLM3Config"), "attention"),
    "glm4": (_cfg("Glm4Config", head_dim=8), "attention"),
    "llama4_text": (_cfg("Llama4TextConfig", head_dim=8, intermediate_size_mlp=2 * H, num_local_experts=2,
                         num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=64),
                    "attention"),
    "gpt_oss": (_cfg("GptOssConfig", head_dim=8, num_local_experts=4, num_experts_per_tok=2,
                     sliding_window=8), "attention"),
    "mamba": (lambda: tf.MambaConfig(vocab_size=VOCAB_SIZE, hidden_size=H, num_hidden_layers=L,
                                     state_size=8, expand=2, conv_kernel=4, use_mambapy=False, **IDS),
              "recurrent"),
    "mamba2": (lambda: tf.Mamba2Config(vocab_size=VOCAB_SIZE, hidden_size=H, num_hidden_layers=L,
                                       num_heads=8, head_dim=8, state_size=8, expand=2, n_groups=1,
                                       conv_kernel=4, chunk_size=16, **IDS), "recurrent"),
    "rwkv": (_plain("rwkv"), "recurrent"),
    "jamba": (_cfg("JambaConfig", **MOE, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
                   expert_layer_offset=1, mamba_d_state=8, mamba_d_conv=4,
                   mamba_expand=2), "hybrid"),
    "bamba": (_cfg("BambaConfig", **SSM2, attn_layer_indices=[1]), "hybrid"),
    "granitemoehybrid": (_cfg("GraniteMoeHybridConfig", **SSM2, num_local_experts=4, num_experts_per_tok=2,
                              shared_intermediate_size=H, position_embedding_type="rope",
                              layer_types=["mamba", "attention", "mamba"]), "hybrid"),
    "falcon_h1": (_cfg("FalconH1Config", **SSM2, mamba_d_ssm=64, head_dim=8), "hybrid"),
    "zamba2": (_cfg("Zamba2Config", mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_ngroups=1,
                    n_mamba_heads=8, chunk_size=16, num_mem_blocks=1,
                    layers_block_type=["mamba", "hybrid", "mamba"], adapter_rank=8), "hybrid"),
    "nemotron_h": (lambda: tf.NemotronHConfig(
        vocab_size=VOCAB_SIZE, hidden_size=H, layers_block_type=["mamba", "attention", "mlp"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=2 * H,
        ssm_state_size=8, mamba_num_heads=8, mamba_head_dim=8, n_groups=1, conv_kernel=4, expand=2,
        chunk_size=16, max_position_embeddings=256, **IDS), "hybrid"),
    "qwen3_next": (_cfg("Qwen3NextConfig", head_dim=8, **MOE, moe_intermediate_size=H,
                        shared_expert_intermediate_size=H, linear_key_head_dim=8, linear_value_head_dim=8,
                        linear_num_key_heads=2, linear_num_value_heads=4, linear_conv_kernel_dim=4,
                        layer_types=["linear_attention", "full_attention", "linear_attention"]), "hybrid"),
    "lfm2": (_cfg("Lfm2Config", conv_L_cache=3, layer_types=["conv", "full_attention", "conv"]), "hybrid"),
}
