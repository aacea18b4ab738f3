"""``--precision auto``: what it resolves to for each detected CPU/GPU capability (detection mocked)."""

from __future__ import annotations

import pytest
import torch

from ssltk.train import runtime
from ssltk.train.runtime import cpu_bf16_kind, make_runtime, resolve_precision

# /proc/cpuinfo excerpts (one core each) of the CPU kinds docs/performance.md describes.
CPUINFO = {
    "avx2": "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma bmi2\n",
    "avx512_no_bf16": "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512bw avx512vl avx512_vnni\n",
    "avx512_bf16": "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n",
    "amx": "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n",
    "neoverse": "processor\t: 0\nFeatures\t: fp asimd sve bf16\n",  # arm64: no x86 flags line
}
EXPECTED = {  # kind -> (cpu_bf16_kind, auto precision, auto channels_last)
    "avx2": (None, "fp32", False),
    "avx512_no_bf16": (None, "fp32", False),
    "avx512_bf16": ("avx512_bf16", "bf16", True),
    "amx": ("amx", "bf16", True),
    "neoverse": (None, "fp32", False),
}


def _fake_cpuinfo(monkeypatch, text: str | None) -> None:
    def read_text(self, *a, **kw):
        if str(self) != "/proc/cpuinfo":
            raise AssertionError(f"unexpected read of {self}")
        if text is None:
            raise FileNotFoundError("/proc/cpuinfo")
        return text

    monkeypatch.setattr(runtime.Path, "read_text", read_text)


@pytest.mark.parametrize("kind", sorted(CPUINFO))
def test_auto_precision_per_cpu_kind(monkeypatch, kind):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _fake_cpuinfo(monkeypatch, CPUINFO[kind])
    detected, precision, channels_last = EXPECTED[kind]
    assert cpu_bf16_kind() == detected
    assert resolve_precision("auto", torch.device("cpu")) == (torch.bfloat16 if precision == "bf16" else None)
    rt = make_runtime("cpu", "auto", "auto")
    assert (rt.precision, rt.channels_last) == (precision, channels_last)
    # explicit settings win over detection on every kind
    assert make_runtime("cpu", "fp32", "auto").precision == "fp32"
    assert make_runtime("cpu", "bf16", "auto").precision == "bf16"


def test_unreadable_cpuinfo_means_fp32(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _fake_cpuinfo(monkeypatch, None)
    assert cpu_bf16_kind() is None
    assert make_runtime("cpu", "auto", "auto").precision == "fp32"


@pytest.mark.parametrize("bf16_ok", [True, False])
def test_auto_precision_on_cuda_follows_the_gpu(monkeypatch, bf16_ok):
    _fake_cpuinfo(monkeypatch, CPUINFO["amx"] if not bf16_ok else CPUINFO["avx2"])  # the host CPU does not matter
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: bf16_ok)
    got = resolve_precision("auto", torch.device("cuda"))
    assert got == (torch.bfloat16 if bf16_ok else None)
