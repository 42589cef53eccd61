"""``TrainConfig.cuda_graph``: the forward and backward replayed from a CUDA graph in ``fit``.

The GPU tests compare whole short training runs with and without the graph (same seed, same
batches): the replayed kernels are the eager ones, so the runs agree to the last bits that the
kernels' atomic sums leave free. On the CPU the option is ignored.
"""

import pytest
import torch

from strandwise import Cherimoya
from strandwise.train import OptimizerConfig, TrainConfig, fit

from planted import planted_dataset


def _model(seed=0, **kw):
    return Cherimoya(n_filters=32, n_layers=4, trimming=40, random_state=seed, **kw)


def _cfg(graph, precision="32-true", epochs=3, accelerator="auto"):
    return TrainConfig(batch_size=32, max_epochs=epochs, random_state=0, precision=precision,
                       accelerator=accelerator, devices=1, cuda_graph=graph,
                       optimizer=OptimizerConfig(n_warmup_epochs=1, adam_lr=1e-2))


def test_cuda_graph_must_be_a_bool_or_null():
    with pytest.raises(ValueError, match="cuda_graph"):
        _cfg("yes").validate()
    _cfg(None).validate()


def test_cuda_graph_auto_covers_the_gpu_checked_precisions_on_one_cuda_device():
    from strandwise.train.module import graph_step_enabled

    auto = TrainConfig()
    assert auto.cuda_graph is None
    assert graph_step_enabled(auto, True, 1)
    assert graph_step_enabled(TrainConfig(precision="bf16-mixed"), True, 1)
    assert not graph_step_enabled(TrainConfig(precision="16-mixed"), True, 1)  # not checked on a GPU
    assert graph_step_enabled(TrainConfig(precision="16-mixed", cuda_graph=True), True, 1)
    assert not graph_step_enabled(auto, False, 1)  # CPU
    assert not graph_step_enabled(auto, True, 2)  # data parallel
    assert not graph_step_enabled(TrainConfig(cuda_graph=False), True, 1)


def test_cuda_graph_is_ignored_on_the_cpu():
    X, y = planted_dataset(64, seed=0)
    a = fit(_model(), (X, y), config=_cfg(False, epochs=1, accelerator="cpu"), quiet=True)
    b = fit(_model(), (X, y), config=_cfg(True, epochs=1, accelerator="cpu"), quiet=True)
    for (k, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), k


def _run(graph, precision, data, valid, epochs):
    model = _model(7)
    r = fit(model, data, valid=valid, config=_cfg(graph, precision, epochs, "gpu"), quiet=True)
    # the model comes back with its own forward (the graphed one was not left on the instance)
    assert "forward" not in r.model.__dict__
    return r


def _max_diffs(a, b):
    return {k: (p.float() - q.float()).abs().max().item()
            for (k, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items())}


@pytest.mark.gpu
def test_graphed_fit_matches_eager_fit_fp32():
    data = planted_dataset(256, seed=1)
    valid = planted_dataset(64, seed=2)
    eager = _run(False, "32-true", data, valid, 3)
    graphed = _run(True, "32-true", data, valid, 3)
    for he, hg in zip(eager.history, graphed.history):
        for k in ("train_mnll", "train_count_mse", "val_mnll", "val_count_pearson"):
            assert hg[k] == pytest.approx(he[k], rel=2e-3, abs=2e-3), (he["epoch"], k, he[k], hg[k])
    n = 0
    for (k, a), (_, b) in zip(eager.model.state_dict().items(), graphed.model.state_dict().items()):
        scale = a.float().abs().max().item() + 1e-6
        assert (a.float() - b.float()).abs().max().item() <= 2e-3 * scale + 1e-5, k
        n += 1
    assert n > 10


@pytest.mark.gpu
def test_graphed_fit_bf16_within_the_eager_run_to_run_spread():
    """bf16: the fused block's backward sums with atomics, so two eager runs already differ in
    the last bits, and 24 Muon steps grow that. The graphed run must stay within the spread of
    eager runs (and agree on the epoch losses)."""
    data = planted_dataset(256, seed=1)
    valid = planted_dataset(64, seed=2)
    eager = _run(False, "bf16-mixed", data, valid, 3)
    eager2 = _run(False, "bf16-mixed", data, valid, 3)
    graphed = _run(True, "bf16-mixed", data, valid, 3)
    for he, hg in zip(eager.history, graphed.history):
        for k in ("train_mnll", "val_mnll"):
            assert hg[k] == pytest.approx(he[k], rel=3e-2), (he["epoch"], k, he[k], hg[k])
    noise, dg = _max_diffs(eager, eager2), _max_diffs(eager, graphed)
    spread = max(noise.values())
    print(f"bf16 eager-vs-eager max|Δw| {spread:.3e}, graph-vs-eager {max(dg.values()):.3e}")
    for k, d in dg.items():
        assert d <= 4 * max(noise[k], 0.25 * spread) + 1e-6, (k, d, noise[k], spread)


@pytest.mark.gpu
def test_graphed_fit_recaptures_after_the_loss_weights_freeze(monkeypatch):
    """A freeze changes the trainable set: the graph is captured again and training goes on."""
    import strandwise.train.losses as losses

    data = planted_dataset(128, seed=3)
    kg_init = losses.KendallGalWeights.__init__

    def init(self, loss_weights=None, freeze_threshold=1.0):  # freeze after the first epoch
        kg_init(self, loss_weights, freeze_threshold=1e9)

    monkeypatch.setattr(losses.KendallGalWeights, "__init__", init)
    eager = _run(False, "32-true", data, None, 3)
    graphed = _run(True, "32-true", data, None, 3)
    assert not graphed.model.lw0.requires_grad  # frozen
    for (k, a), (_, b) in zip(eager.model.state_dict().items(), graphed.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3, msg=k)


@pytest.mark.gpu
def test_failed_capture_warns_and_trains_eagerly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", broken)
    with pytest.warns(RuntimeWarning, match="cuda_graph"):
        r = _run(True, "32-true", planted_dataset(64, seed=4), None, 1)
    assert all(torch.isfinite(v).all() for v in r.model.state_dict().values())


@pytest.mark.gpu
def test_graphed_fit_with_control_tracks_matches_eager():
    """Two graph inputs (sequence and control tracks)."""
    X, y = planted_dataset(128, seed=5)
    ctl = torch.log1p(torch.poisson(torch.full((128, 2, X.shape[-1]), 0.3), generator=torch.Generator().manual_seed(0)))
    data = (X, y, torch.ones(128), ctl)

    def run(graph):
        m = _model(3, n_control_tracks=2)
        return fit(m, data, config=_cfg(graph, "32-true", 2, "gpu"), quiet=True)

    eager, graphed = run(False), run(True)
    for (k, a), (_, b) in zip(eager.model.state_dict().items(), graphed.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3, msg=k)
