"""The CPU default dtype: bf16 only where it is native and measured faster; the verdict is kept."""

from __future__ import annotations

from pathlib import Path

import torch

from linsteer.model.cpudtype import cpu_default_dtype

NATIVE = "model name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
EMULATED = "model name\t: Old CPU\nflags\t\t: fpu avx2\n"


def timer(bf16: float, fp32: float, calls: list[torch.dtype]):  # type: ignore[no-untyped-def]
    def t(dtype: torch.dtype) -> float:
        calls.append(dtype)
        return bf16 if dtype == torch.bfloat16 else fp32
    return t


def test_bf16_only_where_native_and_measured_faster(tmp_path: Path) -> None:
    calls: list[torch.dtype] = []
    assert cpu_default_dtype(None, EMULATED, timer(0.1, 1.0, calls)) == torch.float32
    assert calls == []  # no bf16 instructions: not even measured
    assert cpu_default_dtype(None, NATIVE, timer(0.5, 1.0, calls)) == torch.bfloat16
    assert cpu_default_dtype(None, NATIVE, timer(1.4, 1.0, calls)) == torch.float32  # native, slower
    assert cpu_default_dtype(None, NATIVE, timer(0.9, 1.0, calls)) == torch.float32  # not clearly faster


def test_the_verdict_is_measured_once_per_machine(tmp_path: Path) -> None:
    cache = tmp_path / "cpu_dtype.json"
    calls: list[torch.dtype] = []
    assert cpu_default_dtype(cache, NATIVE, timer(1.5, 1.0, calls)) == torch.float32
    assert len(calls) == 2 and cache.is_file()
    # later calls reuse it, even if a new timing would say otherwise: one machine, one default
    assert cpu_default_dtype(cache, NATIVE, timer(0.1, 1.0, calls)) == torch.float32
    assert len(calls) == 2
    other = NATIVE.replace("Test CPU 9000", "Other CPU")
    assert cpu_default_dtype(cache, other, timer(0.1, 1.0, calls)) == torch.bfloat16
    assert len(calls) == 4


def test_a_real_measurement_runs() -> None:
    assert cpu_default_dtype(None, NATIVE) in (torch.float32, torch.bfloat16)


def test_the_machine_is_named_with_its_bf16_kind_and_torch_kernels() -> None:
    from linsteer.model.cpudtype import machine_text

    native = machine_text("cpu", NATIVE)
    assert native.startswith("cpu: Test CPU 9000, ") and "AVX512-BF16" in native
    assert "AVX2 (torch kernels: " in machine_text("cpu", EMULATED)
    assert torch.backends.cpu.get_cpu_capability() in machine_text("cpu", NATIVE)
