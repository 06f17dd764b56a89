"""Capture never synchronises inside a hook, and its reducers give the same numbers wherever they run.

On a GPU a host read (``.item()``, ``.cpu()``, ``.numpy()``, ``bool(t)``, ``float(t)``) inside a forward
hook makes the device wait mid-pass. On the CPU such a read costs nothing, so these tests make one an
error: every hook geomcheck registers is wrapped in a guard, and host reads raise while a guard is active.
On CUDA the guard is CUDA's own detector (``torch.cuda.set_sync_debug_mode("error")``), which also
catches synchronising copies and kernels that no Tensor method names.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from geomcheck.capture import hooks, inputs
from geomcheck.capture.hooks import CapturePlan, capture, flush_to_host
from geomcheck.models.loader import load

_STATE = threading.local()


class HostReadInHook(AssertionError):
    pass


def _guarded(function):
    def wrapper(*args, **kwargs):
        _STATE.depth = getattr(_STATE, "depth", 0) + 1
        try:
            return function(*args, **kwargs)
        finally:
            _STATE.depth -= 1

    return wrapper


def _cuda_strict(function):
    def wrapper(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return function(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    return wrapper


def _wrap_every_hook(monkeypatch, wrap) -> None:
    for name in ("register_forward_hook", "register_forward_pre_hook"):
        original = getattr(torch.nn.Module, name)

        def register(self, hook, *args, _original=original, **kwargs):
            return _original(self, wrap(hook), *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, name, register)


def _forbidden(name, original):
    def method(self, *args, **kwargs):
        if getattr(_STATE, "depth", 0):
            raise HostReadInHook(f"Tensor.{name} called inside a capture hook")
        return original(self, *args, **kwargs)

    return method


@pytest.fixture
def no_host_reads_in_hooks(monkeypatch):
    _wrap_every_hook(monkeypatch, _guarded)
    for name in ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, _forbidden(name, getattr(torch.Tensor, name)))


@pytest.fixture(scope="module")
def tiny(tiny_dirs):
    return load(str(tiny_dirs["llama"]))


def _batch(loaded, sequences=5, tokens=16):
    spec = inputs.InputSpec(sequences=sequences, tokens=tokens)
    return inputs.build_batch(spec, loaded.tokenizer, bos_token_id=loaded.bos_token_id, default_bos=True,
                              vocab_size=int(loaded.model.config.vocab_size))


@pytest.fixture
def accelerator_path(monkeypatch):
    """Take the path capture takes on a GPU (queue in the hook, one host copy per batch) on the CPU."""
    monkeypatch.setattr(hooks, "folds_in_hook", lambda device: False)


def test_hooks_never_read_tensors_on_the_host(tiny, accelerator_path, no_host_reads_in_hooks):
    acts = capture(tiny, _batch(tiny), CapturePlan(batch_size=2, samples=20))
    assert acts.sites and all(stats.norms.min() > 0 for stats in acts.sites.values())


def test_folding_in_the_hook_on_the_cpu_gives_the_accelerator_path_s_numbers(tiny, monkeypatch):
    plan = CapturePlan(batch_size=2, samples=20)
    folded = capture(tiny, _batch(tiny), plan)
    monkeypatch.setattr(hooks, "folds_in_hook", lambda device: False)
    queued = capture(tiny, _batch(tiny), plan)
    assert folded.sites.keys() == queued.sites.keys()
    for site, stats in folded.sites.items():
        other = queued.sites[site]
        assert np.array_equal(stats.norms, other.norms) and np.array_equal(stats.group_max_abs, other.group_max_abs)
        assert (stats.samples is None) == (other.samples is None)
        if stats.samples is not None:
            assert np.array_equal(stats.samples, other.samples)
        if stats.group_position_sum is not None:
            assert np.array_equal(stats.group_position_sum, other.group_position_sum)


def test_the_guard_catches_a_host_read(tiny, accelerator_path, no_host_reads_in_hooks, monkeypatch):
    _leak_a_host_read(monkeypatch)
    with pytest.raises(HostReadInHook, match="__float__"):
        capture(tiny, _batch(tiny), CapturePlan(batch_size=2, samples=20))


def _leak_a_host_read(monkeypatch) -> None:
    original = hooks._Reducer.update

    def leaky(self, x):
        original(self, x)
        if self.rows is not None:
            float(x.sum())  # what the old reducers did per site and batch

    monkeypatch.setattr(hooks._Reducer, "update", leaky)


def test_one_transfer_gives_back_every_tensor_unchanged():
    tensors = [torch.arange(6.0).reshape(2, 3), torch.tensor(4.0), torch.ones(2, 2, 2)]
    for got, want in zip(flush_to_host(tensors), tensors):
        assert got.shape == tuple(want.shape) and np.array_equal(got, want.numpy())
    meta = [t.to("meta") for t in tensors]  # not on the CPU: takes the concatenate-and-copy path
    with pytest.raises(NotImplementedError):
        flush_to_host(meta)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def tiny_on_gpu(tiny):
    gpu = load(str(tiny.ref.target))
    gpu.model.to("cuda")
    return gpu


@needs_cuda
def test_reducers_on_the_device_match_the_host(tiny, tiny_on_gpu):
    batch = _batch(tiny, sequences=7)  # 7 sequences in batches of 2: groups straddle batches
    plan = CapturePlan(batch_size=2, samples=20, groups=3)
    on_host, on_device = capture(tiny, batch, plan), capture(tiny_on_gpu, batch, plan)
    for site, stats in on_host.sites.items():
        other = on_device.sites[site]
        assert other.nonfinite == stats.nonfinite == 0
        np.testing.assert_allclose(other.norms, stats.norms, rtol=1e-4)
        np.testing.assert_allclose(other.max_abs, stats.max_abs, rtol=1e-4)
        np.testing.assert_allclose(other.group_max_abs, stats.group_max_abs, rtol=1e-4)
        for name in ("samples", "group_position_sum", "position_sum"):
            mine, theirs = getattr(stats, name), getattr(other, name)
            assert (mine is None) == (theirs is None), (site, name)
            if mine is not None:
                np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-4 * float(np.abs(mine).max()))


@needs_cuda
def test_hooks_never_synchronise_the_gpu(tiny_on_gpu, monkeypatch):
    _wrap_every_hook(monkeypatch, _cuda_strict)
    acts = capture(tiny_on_gpu, _batch(tiny_on_gpu), CapturePlan(batch_size=2, samples=20))
    assert acts.sites and all(stats.norms.min() > 0 for stats in acts.sites.values())
    _leak_a_host_read(monkeypatch)  # the detector itself: a host read inside a hook must raise
    with pytest.raises(RuntimeError, match="synchroniz"):
        capture(tiny_on_gpu, _batch(tiny_on_gpu), CapturePlan(batch_size=2, samples=20))
