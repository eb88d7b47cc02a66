"""Random-init models of real shapes with an offline tokenizer: nothing is downloaded.

The tokenizer is a byte-level BPE trained in a few seconds on text at hand (linsteer's bundled
data, or any files given), so prompts tokenise to realistic lengths; its vocabulary is padded to
the model's with unreachable filler tokens so every id the model emits decodes.

Also a command that writes a model folder (config, random bf16 weights, tokenizer) for
``linsteer run --model FOLDER``::

    python benchmarks/random_models.py --shape llama-3.2-1b --out /tmp/llama1b [--text FILE ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {"arch": "llama", "vocab_size": 128256, "hidden_size": 2048,
                     "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": True,
                     "rope_theta": 500000.0, "max_position_embeddings": 131072,
                     "rms_norm_eps": 1e-5},
    "qwen2.5-1.5b": {"arch": "qwen2", "vocab_size": 151936, "hidden_size": 1536,
                     "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "tie_word_embeddings": True, "rope_theta": 1000000.0,
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-6},
    # the same code on a CPU in seconds
    "tiny-llama": {"arch": "llama", "vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128,
                   "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "tie_word_embeddings": True, "max_position_embeddings": 4096},
    "tiny-qwen": {"arch": "qwen2", "vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "tie_word_embeddings": True, "max_position_embeddings": 4096},
}
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def bundled_texts() -> list[str]:
    """Text shipped with linsteer (neutral passages, facts, arithmetic items) to train on."""
    from importlib.resources import files

    texts: list[str] = []
    data = files("linsteer").joinpath("data")
    for name in ("neutral.json", "facts.json"):
        texts.append(json.dumps(json.loads(data.joinpath(name).read_text())))
    from linsteer.prompts.formats import GSM8K_COT_EXEMPLARS

    texts += [str(ex) for ex in GSM8K_COT_EXEMPLARS]
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int, merges_vocab: int = 8000) -> Any:
    """A byte-level BPE (``merges_vocab`` learned tokens) padded with fillers to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=min(merges_vocab, vocab_size), special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    base.train_from_iterator(list(texts), trainer)
    spec = json.loads(base.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
    for i in range(len(vocab), vocab_size):
        vocab[f"<x{i}>"] = i  # never produced by a merge; decodes to its own name
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def config_for(shape: str) -> Any:
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
    return config_of(SHAPES[shape])


def config_of(shape: dict[str, Any]) -> Any:
    """A Llama or Qwen2 config from a shape dict like those of ``SHAPES``."""
    from transformers import LlamaConfig, Qwen2Config

    fields = dict(shape)
    arch = fields.pop("arch")
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    return (LlamaConfig if arch == "llama" else Qwen2Config)(**fields, **ids)


def random_model(shape: str, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """A random-init causal LM of ``shape`` built directly on ``device`` in ``dtype``, eval mode."""
    return random_model_of(SHAPES[shape] if shape in SHAPES else config_for(shape), device, dtype, seed)


def random_model_of(shape: dict[str, Any], device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """``random_model`` for a shape dict (``SHAPES``' keys)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config_of(shape), dtype=dtype,
                                                 attn_implementation="sdpa")
    model.generation_config.eos_token_id = None  # random weights: never stop early
    return model.eval()


def single_token_words(tokenizer: Any, limit: int = 2000) -> list[int]:
    """Ids of learned tokens that are a space plus letters (they re-tokenise to themselves)."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    words = sorted(i for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 2)
    return words[:limit]


def exact_length_texts(tokenizer: Any, n: int, length: int, seed: int = 0) -> list[str]:
    """``n`` random texts of exactly ``length`` tokens (BOS included)."""
    words = single_token_words(tokenizer)
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(words), (n, length - 1), generator=gen)
    texts = [tokenizer.decode([words[int(i)] for i in row]) for row in picks]
    got = {len(ids) for ids in tokenizer(texts)["input_ids"]}
    if got != {length}:
        raise SystemExit(f"texts tokenise to lengths {sorted(got)[:5]}, not {length}")
    return texts


def write_folder(shape: str, out: Path, texts: Sequence[str], dtype: torch.dtype) -> None:
    """A model folder ``linsteer`` (and ``from_pretrained``) loads: config, weights, tokenizer."""
    tokenizer = train_tokenizer(texts, SHAPES[shape]["vocab_size"])
    model = random_model(shape, "cuda" if torch.cuda.is_available() else "cpu", dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="llama-3.2-1b", choices=sorted(SHAPES))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--text", nargs="*", default=[], type=Path,
                        help="files to train the tokenizer on (besides linsteer's own text)")
    parser.add_argument("--max-chars", type=int, default=3_000_000)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    args = parser.parse_args()
    texts = bundled_texts()
    for path in args.text:
        texts.append(path.read_text()[: args.max_chars])
    write_folder(args.shape, args.out, texts, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    print(f"wrote {args.shape} to {args.out}")


if __name__ == "__main__":
    main()
