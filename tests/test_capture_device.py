"""Capture never synchronises inside a hook, and its reducers give the same numbers wherever they run.

On a GPU a host read (``.item()``, ``.cpu()``, ``.numpy()``, ``bool(t)``, ``float(t)``) inside a forward
hook makes the device wait mid-pass. On the CPU such a read costs nothing, so this test makes one an
error: every hook geomcheck registers is wrapped in a guard, and host reads raise while a guard is active.
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


def _forbidden(name, original):
    def method(self, *args, **kwargs):
        if getattr(_STATE, "depth", 0):
            raise HostReadInHook(f"Tensor.{name} called inside a capture hook")
        return original(self, *args, **kwargs)

    return method


@pytest.fixture
def no_host_reads_in_hooks(monkeypatch):
    for name in ("register_forward_hook", "register_forward_pre_hook"):
        original = getattr(torch.nn.Module, name)

        def register(self, hook, *args, _original=original, **kwargs):
            return _original(self, _guarded(hook), *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, name, register)
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


def test_folding_in_the_hook_on_the_cpu_gives_the_queued_path_s_numbers(tiny, monkeypatch):
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
    original = hooks._Reducer.update

    def leaky(self, x):
        original(self, x)
        float(x.sum())  # what the old reducers did per site and batch

    monkeypatch.setattr(hooks._Reducer, "update", leaky)
    with pytest.raises(HostReadInHook, match="__float__"):
        capture(tiny, _batch(tiny), CapturePlan(batch_size=2, samples=20))


def test_one_transfer_gives_back_every_tensor_unchanged():
    tensors = [torch.arange(6.0).reshape(2, 3), torch.tensor(4.0), torch.ones(2, 2, 2)]
    for got, want in zip(flush_to_host(tensors), tensors):
        assert got.shape == tuple(want.shape) and np.array_equal(got, want.numpy())
    meta = [t.to("meta") for t in tensors]  # not on the CPU: takes the concatenate-and-copy path
    with pytest.raises(NotImplementedError):
        flush_to_host(meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reducers_on_the_device_match_the_host(tiny):
    batch = _batch(tiny)
    on_host = capture(tiny, batch, CapturePlan(batch_size=2, samples=20))
    gpu = load(str(tiny.ref.target), )
    gpu.model.to("cuda")
    on_device = capture(gpu, batch, CapturePlan(batch_size=2, samples=20))
    for site, stats in on_host.sites.items():
        np.testing.assert_allclose(on_device.sites[site].norms, stats.norms, rtol=1e-4)
        np.testing.assert_allclose(on_device.sites[site].max_abs, stats.max_abs, rtol=1e-4)
