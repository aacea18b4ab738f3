"""Execution settings: CPU compute threads, precision and device resolution, the rank-0 sync helper."""

from __future__ import annotations

import os

import pytest
import torch

from ssltk.errors import UsageError
from ssltk.train.runtime import Runtime, make_runtime, on_main_then_sync, resolve_precision, set_cpu_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_auto_threads_use_every_core(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    assert set_cpu_threads(0) == len(os.sched_getaffinity(0)) == torch.get_num_threads()


def test_explicit_threads_and_omp_num_threads_win(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert set_cpu_threads(3) == 3 == torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_cpu_threads(0) == 1  # left as the environment set it


def test_precision_resolution_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16  # explicit: honoured (emulated where not native)
    monkeypatch.setattr("ssltk.train.runtime.cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", cpu) is None
    monkeypatch.setattr("ssltk.train.runtime.cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", cpu) is torch.bfloat16


def test_auto_channels_last_follows_bf16(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("ssltk.train.runtime.cpu_has_fast_bf16", lambda: False)
    rt = make_runtime("cpu", "auto", "auto")
    assert (rt.precision, rt.channels_last) == ("fp32", False)
    rt = make_runtime("cpu", "bf16", "auto")
    assert (rt.precision, rt.channels_last) == ("bf16", True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_gpu_is_one_line():
    with pytest.raises(UsageError, match="CUDA is not available"):
        make_runtime("cuda", "auto", "auto")


def test_on_main_then_sync_single_process():
    rt = Runtime(torch.device("cpu"), None, False)
    calls = []
    on_main_then_sync(rt, "writing", lambda: calls.append(1))
    assert calls == [1]
    with pytest.raises(OSError, match="disk full"):
        on_main_then_sync(rt, "writing", lambda: (_ for _ in ()).throw(OSError("disk full")))
    not_main = Runtime(torch.device("cpu"), None, False, rank=1, world_size=1)
    on_main_then_sync(not_main, "writing", lambda: calls.append(2))
    assert calls == [1]  # only rank 0 writes


def test_one_line_describes_any_exception():
    from ssltk.errors import one_line

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert one_line(OSError("disk full\nmore detail")) == "OSError: disk full"
    assert one_line(ValueError()) == "ValueError"
    assert one_line(Unprintable()) == "Unprintable"
