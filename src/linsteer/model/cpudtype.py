"""The CPU's default dtype, chosen by measuring, not by CPU flags alone.

bf16 halves memory, but is it faster? Without AVX512-BF16/AMX it is emulated (reading Gemma 3 270M
was ~5x slower than fp32). With AVX512-BF16 it still need not win: on a 2-core AVX512-BF16 machine
with torch 2.13 a bf16 matmul of a model's shapes took 1.4-2x fp32's time, and the MC sweep 1.9x.
So a CPU with native bf16 gets one short matmul timing in each dtype, and bf16 is the default only
where it is clearly faster. The verdict is kept in the user cache per CPU model, torch version and
thread count, so every run on one machine resolves ``auto`` the same way (runs stay resumable).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from linsteer.io import write_json

BF16_MUST_BE = 0.8  # bf16 time / fp32 time at most this for bf16 to be the default
_SHAPE = (512, 1024, 1024)


def _cpu_info() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def native_bf16(info: str) -> bool:
    return "avx512_bf16" in info or "amx_bf16" in info


def _matmul_seconds(dtype: torch.dtype, repeats: int = 5) -> float:
    m, k, n = _SHAPE
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def _machine_key(info: str) -> str:
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown cpu")
    return f"{model} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def machine_text(device: torch.device | str = "cpu", info: str | None = None) -> str:
    """The machine a run computes on, for reports: the CPU model, its threads and its bf16 kind
    (native AVX512-BF16/AMX or not), or the GPU's name."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return device.type
    info = _cpu_info() if info is None else info
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown cpu")
    kind = ("AMX" if "amx_bf16" in info else "AVX512-BF16" if "avx512_bf16" in info
            else "AVX512" if "avx512f" in info else "AVX2" if "avx2" in info else "no AVX2")
    kernels = torch.backends.cpu.get_cpu_capability()  # lower than the CPU's where ATEN_CPU_CAPABILITY says
    return f"cpu: {model}, {torch.get_num_threads()} threads, {kind} (torch kernels: {kernels})"


def cpu_default_dtype(cache: Path | None, info: str | None = None,
                      timer: Callable[[torch.dtype], float] = _matmul_seconds) -> torch.dtype:
    """fp32, or bf16 where the CPU computes it natively and measurably faster (see module doc).
    ``cache``: a JSON file remembering the verdict per machine key (None: measure every time)."""
    info = _cpu_info() if info is None else info
    if not native_bf16(info):
        return torch.float32
    key = _machine_key(info)
    known: dict[str, float] = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
    ratio = known.get(key)
    if not isinstance(ratio, float):
        ratio = timer(torch.bfloat16) / timer(torch.float32)
        if cache is not None:
            known[key] = ratio
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, known)
    return torch.bfloat16 if ratio <= BF16_MUST_BE else torch.float32
