"""The derived-weight cache behind the Cheri kernels (:func:`strandwise.kernels.cheri_infer.cached_derived`), on the CPU."""

import torch


def test_derived_weights_are_never_cached_while_a_cuda_graph_is_captured(monkeypatch):
    """Under capture the copy must be made inside the graph (a cached copy would be baked in and
    go stale after an optimizer step); outside capture it is cached. CPU stand-in for the
    GPU test test_cheri_train.py::test_graph_replay_follows_weight_updates."""
    from strandwise.kernels import cheri_infer as ci

    class FakeCudaWeight:  # only what the capture branch reads
        is_cuda = True

    calls = []

    def build():
        calls.append(1)
        return len(calls)

    w = FakeCudaWeight()
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    n_cached = len(ci._CACHE)
    assert ci.cached_derived((w,), ("probe",), build) == 1
    assert ci.cached_derived((w,), ("probe",), build) == 2  # built again, not reused
    assert len(ci._CACHE) == n_cached  # and nothing stored
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    real = torch.randn(4, 4)
    v1 = ci.cached_derived((real,), ("probe",), build)
    assert ci.cached_derived((real,), ("probe",), build) == v1  # cached outside capture
    ci.clear_derived_weight_cache()


def test_env_flags_are_strict_zero_or_one(monkeypatch):
    import pytest

    from strandwise.kernels._host import env_flag

    monkeypatch.delenv("STRANDWISE_TEST_FLAG", raising=False)
    assert env_flag("STRANDWISE_TEST_FLAG", True) is True
    monkeypatch.setenv("STRANDWISE_TEST_FLAG", " 0 ")
    assert env_flag("STRANDWISE_TEST_FLAG", True) is False
    monkeypatch.setenv("STRANDWISE_TEST_FLAG", "1")
    assert env_flag("STRANDWISE_TEST_FLAG", False) is True
    monkeypatch.setenv("STRANDWISE_TEST_FLAG", "yes")
    with pytest.raises(ValueError, match="STRANDWISE_TEST_FLAG must be 0 or 1; got 'yes'"):
        env_flag("STRANDWISE_TEST_FLAG", False)
