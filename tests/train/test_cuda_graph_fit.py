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


def test_cuda_graph_must_be_a_bool():
    with pytest.raises(ValueError, match="cuda_graph"):
        _cfg("yes").validate()


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


@pytest.mark.gpu
@pytest.mark.parametrize("precision,tol", [("32-true", 2e-3), ("bf16-mixed", 3e-2)])
def test_graphed_fit_matches_eager_fit(precision, tol):
    data = planted_dataset(256, seed=1)
    valid = planted_dataset(64, seed=2)
    eager = _run(False, precision, data, valid, 3)
    graphed = _run(True, precision, data, valid, 3)
    for he, hg in zip(eager.history, graphed.history):
        for k in ("train_mnll", "train_count_mse", "val_mnll", "val_count_pearson"):
            assert hg[k] == pytest.approx(he[k], rel=tol, abs=tol), (he["epoch"], k, he[k], hg[k])
    n = 0
    for (k, a), (_, b) in zip(eager.model.state_dict().items(), graphed.model.state_dict().items()):
        scale = a.float().abs().max().item() + 1e-6
        assert (a.float() - b.float()).abs().max().item() <= tol * scale + 1e-5, k
        n += 1
    assert n > 10


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
