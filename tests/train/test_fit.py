import os

import pytest
import torch

from strandwise import Cherimoya
from strandwise.train import OptimizerConfig, TrainConfig, fit
from strandwise.train.api import TensorProfileDataset
from strandwise.train.module import validation_metrics

from planted import planted_dataset


def _model(seed=0):
    return Cherimoya(n_filters=32, n_layers=4, trimming=40, random_state=seed)


def _metrics(model, X, y):
    model.eval()
    with torch.no_grad():
        p, c = model(X)
    return validation_metrics(p, c, y, torch.ones(len(X)), model.signal_groups)


def test_training_learns_planted_motifs(tmp_path):
    X, y = planted_dataset(768, seed=0)
    Xv, yv = planted_dataset(192, seed=1)
    Xt, yt = planted_dataset(192, seed=2)
    untrained = _metrics(_model(), Xt, yt)
    # 192 steps only: a larger AdamW rate lets the count head's bias reach log-count scale.
    cfg = TrainConfig(batch_size=32, max_epochs=8, random_state=0,
                      optimizer=OptimizerConfig(n_warmup_epochs=1, adam_lr=1e-2))
    result = fit(_model(), (X, y), valid=(Xv, yv), config=cfg, output_dir=str(tmp_path), quiet=True)
    trained = _metrics(result.model, Xt, yt)
    assert trained["val_profile_pearson"] > untrained["val_profile_pearson"] + 0.2
    assert trained["val_count_pearson"] > 0.6 and trained["val_count_pearson"] > untrained["val_count_pearson"] + 0.3
    assert len(result.history) == 8 and result.history[-1]["iteration"] == 8 * 24
    name = result.model.name
    for f in (f"{name}.torch", f"{name}.final.torch", f"{name}.log", "last.ckpt"):
        assert os.path.exists(tmp_path / f), f
    lines = (tmp_path / f"{name}.log").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["epoch", "iteration", "train_time"] and len(lines) == 9
    best = Cherimoya.load(tmp_path / f"{name}.torch")
    assert _metrics(best, Xt, yt)["val_count_pearson"] == pytest.approx(trained["val_count_pearson"], abs=1e-5)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    X, y = planted_dataset(128, seed=3)
    Xv, yv = planted_dataset(32, seed=4)
    cfg = lambda e: TrainConfig(batch_size=32, max_epochs=e, random_state=5,  # noqa: E731
                                optimizer=OptimizerConfig(n_warmup_epochs=1))
    full = fit(_model(1), (X, y), valid=(Xv, yv), config=cfg(3), output_dir=str(tmp_path / "a"), quiet=True)
    # interrupted after 2 epochs, then resumed to 3 (same schedule length: max_epochs=3 both times)
    part = _model(1)
    fit(part, (X, y), valid=(Xv, yv), config=cfg(3), output_dir=str(tmp_path / "b"), quiet=True,
        callbacks=[_StopAfter(2)])
    resumed = fit(_model(99), (X, y), valid=(Xv, yv), config=cfg(3), output_dir=str(tmp_path / "b"),
                  resume=True, quiet=True)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


from strandwise.train._lightning import L  # noqa: E402


class _StopAfter(L.Callback):
    def __init__(self, n):
        self.n = n

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


def test_dataset_items_depend_only_on_seed_epoch_index():
    X, y = planted_dataset(20, seed=6)
    a = TensorProfileDataset(X, y, reverse_complement=True, random_state=3)
    b = TensorProfileDataset(X, y, reverse_complement=True, random_state=3)
    c = TensorProfileDataset(X, y, reverse_complement=True, random_state=4)
    keys = [(2, i) for i in range(20)]
    # access order must not matter
    first = [a[k] for k in keys]
    second = [b[k] for k in reversed(keys)][::-1]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(first, second))
    assert any(not torch.equal(a[k][0], c[k][0]) for k in keys)
    # RC'd items are exact reverse complements of some original example
    flipped = sum(
        not any(torch.equal(item[0], X[j]) for j in range(20)) for item in first
    )
    assert 3 <= flipped <= 17


def test_fit_rejects_bad_inputs():
    m = _model()
    X, y = planted_dataset(8)
    with pytest.raises(ValueError, match=r"\(n, 4, L\)"):
        fit(m, (X[:, :3], y), quiet=True)
    with pytest.raises(ValueError, match="signal_groups"):
        fit(m, (X, torch.cat([y, y], 1)), quiet=True)
    with pytest.raises(ValueError, match="output positions"):
        fit(m, (X, y[..., :100]), quiet=True)
    with pytest.raises(ValueError, match="resume"):
        fit(m, (X, y), resume=True, quiet=True)


def test_early_stopping_and_best_epoch_selection(monkeypatch):
    import strandwise.train.module as module

    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])

    def fake_metrics(*args, **kwargs):
        return {"val_mnll": 1.0, "val_profile_pearson": 0.0, "val_count_pearson": next(scores),
                "val_count_mse": 1.0, "val_count_pearson_all": 0.0, "val_count_mse_all": 1.0}

    monkeypatch.setattr(module, "validation_metrics", fake_metrics)
    X, y = planted_dataset(32, seed=7)
    cfg = TrainConfig(batch_size=16, max_epochs=6, early_stopping=2, optimizer=OptimizerConfig(n_warmup_epochs=1))
    r = fit(_model(), (X, y), valid=(X[:8], y[:8]), config=cfg, quiet=True)
    assert len(r.history) == 4  # stopped after two epochs without beating 0.7
    assert r.best_epoch == 1 and r.best_score == 0.7
    assert [h["saved"] for h in r.history] == [True, True, False, False]


def test_init_count_bias_sets_mean_log_count():
    from strandwise.train.api import init_count_bias

    X, y = planted_dataset(40, seed=8)
    m = _model()
    ds = TensorProfileDataset(X, y, reverse_complement=True, random_state=0)
    means = init_count_bias(m, ds)
    expected = torch.log1p(y.sum(dim=(1, 2))).mean()
    torch.testing.assert_close(means, expected[None], atol=1e-5, rtol=0)
    torch.testing.assert_close(m.linear.bias.detach(), expected[None], atol=1e-5, rtol=0)


def test_each_epoch_draws_its_own_keys():
    """Every epoch must reach the dataset with its own epoch number (new order, jitter, RC)."""
    X, y = planted_dataset(64, seed=9)

    class Recording(TensorProfileDataset):
        seen = set()

        def __getitem__(self, key):
            Recording.seen.add(key[0])
            return super().__getitem__(key)

    ds = Recording(X, y, reverse_complement=True, random_state=0)
    cfg = TrainConfig(batch_size=16, max_epochs=3, optimizer=OptimizerConfig(n_warmup_epochs=1))
    fit(_model(), ds, config=cfg, quiet=True)
    assert {0, 1, 2} <= Recording.seen
