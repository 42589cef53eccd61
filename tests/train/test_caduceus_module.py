"""Caduceus training: optimizer groups, schedule, strand handling of the classifier, metrics,
and masked-LM pretraining on real yeast windows (loss falls; resume continues)."""

import math
import os

import numpy as np
import pytest
import torch

from strandwise.evaluate.classification import classification_metrics, f1_score, mcc
from strandwise.io.tokenizer import reverse_complement_ids
from strandwise.train.caduceus_module import (
    CaduceusModelConfig,
    CaduceusOptimConfig,
    CNNBaseline,
    PretrainTrainConfig,
    build_classifier,
    build_mlm_model,
    caduceus_lr_lambda,
    caduceus_param_groups,
    load_classifier,
    pretrain,
    save_classifier,
)
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

YEAST = shared("yeast_genome_R64-1-1")


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # many small ops: 1 thread is much faster than 2 on a loaded 2-core box
    yield
    torch.set_num_threads(prev)


def test_schedule_pretraining_and_finetuning():
    cfg = CaduceusOptimConfig()  # lr 8e-3, warmup 10 % from 1e-6 (prefixed), cosine to 1e-4
    f = caduceus_lr_lambda(cfg, 1000)
    lr = lambda s: cfg.lr * f(s)
    assert lr(0) == pytest.approx(1e-6)
    assert lr(50) == pytest.approx(1e-6 + (8e-3 - 1e-6) * 0.5)
    assert lr(100) == pytest.approx(8e-3)
    assert lr(550) == pytest.approx(1e-4 + (8e-3 - 1e-4) * 0.5)
    assert lr(1000) == pytest.approx(1e-4) and lr(5000) == pytest.approx(1e-4)
    ft = CaduceusOptimConfig(lr=2e-3, warmup_fraction=0.01, lr_min_ratio=0.1, warmup_prefix=False)
    g = caduceus_lr_lambda(ft, 1000)
    assert 2e-3 * g(10) == pytest.approx(2e-4 + (2e-3 - 2e-4) * 0.5 * (1 + math.cos(math.pi * 10 / 1000)))
    assert 2e-3 * g(500) == pytest.approx(2e-4 + (2e-3 - 2e-4) * 0.5)


def test_weight_decay_groups_follow_upstream():
    m = build_mlm_model(CaduceusModelConfig(d_model=16, n_layer=2, d_state=4))
    decay, no_decay = caduceus_param_groups(m, 0.1)
    ids = lambda ps: {id(p) for p in ps["params"]}
    names = {id(p): n for n, p in m.named_parameters()}
    nd = {names[i].split(".")[-1] for i in ids(no_decay)}
    dc = {names[i] for i in ids(decay)}
    assert {"A_log", "D"} <= nd and any("embedding" in names[i] for i in ids(no_decay))
    assert any(n.endswith("norm.weight") or "norm" in n for n in dc)  # RMSNorm weights are decayed
    assert not any(n.endswith("bias") for n in dc)
    unique = {id(p) for p in m.parameters()}
    assert ids(decay) | ids(no_decay) == unique and not ids(decay) & ids(no_decay)


def _ids(B, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 11, (B, L), generator=g)


def test_conjoin_handling_equivalences():
    x = _ids(3, 40)
    x[0, :7] = 4  # left padding on one example
    rc = reverse_complement_ids(x)
    # Ph with conjoin_test: eval logits = average of the single-strand model on x and on rc(x)
    ph = build_classifier(CaduceusModelConfig(variant="ph", d_model=16, n_layer=2, d_state=4), 2, 40).eval()
    assert ph.backbone.conjoin_test and not ph.backbone.conjoin_train
    with torch.no_grad():
        both = ph(x)
        ph.backbone.conjoin_test = False
        single = (ph(x) + ph(rc)) / 2
        ph.backbone.conjoin_test = True
        assert torch.allclose(both, single, atol=1e-5)
        ph.train()
        assert ph(x).shape == (3, 2) and not torch.allclose(ph(x), both, atol=1e-4)  # training: one strand
    # PS (conjoin_train): logits are reverse-complement invariant, in training and in eval
    ps = build_classifier(CaduceusModelConfig(variant="ps", d_model=16, n_layer=2, d_state=4), 3, 40).eval()
    with torch.no_grad():
        assert torch.allclose(ps(x), ps(rc), atol=1e-4)
    # mean pooling ignores padding positions; mean_all (upstream) does not
    assert ps.pooling == "mean"


def test_classification_metrics_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    logits = torch.from_numpy(rng.normal(size=(300, 2)) + np.stack([0 * y, 1.5 * y], 1)).float()
    m = classification_metrics(logits, torch.from_numpy(y))
    pred = logits.argmax(1).numpy()
    assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(y, pred))
    assert m["f1"] == pytest.approx(sk.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, torch.softmax(logits, 1)[:, 1].numpy()))
    y3, p3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert mcc(y3, p3, 3) == pytest.approx(sk.matthews_corrcoef(y3, p3))
    assert f1_score(y3, p3, 3) == pytest.approx(sk.f1_score(y3, p3, average="macro"))
    assert mcc(np.zeros(5, int), np.zeros(5, int), 2) == 0.0


def test_classifier_save_load_round_trip(tmp_path):
    import dataclasses

    mc = CaduceusModelConfig(variant="ps", d_model=16, n_layer=1, d_state=4)
    m = build_classifier(mc, 2, 30).eval()
    save_classifier(m, str(tmp_path), {"model": dataclasses.asdict(mc), "num_classes": 2, "max_length": 30})
    m2, meta = load_classifier(str(tmp_path))
    x = _ids(2, 30)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    cnn = CNNBaseline(30, 2).eval()
    cm = CaduceusModelConfig(kind="cnn")
    save_classifier(cnn, str(tmp_path / "cnn"), {"model": dataclasses.asdict(cm), "num_classes": 2, "max_length": 30})
    c2, _ = load_classifier(str(tmp_path / "cnn"))
    with torch.no_grad():
        assert torch.equal(cnn(x), c2(x))


def _yeast_sets(L=64):
    from strandwise.data.mlm import MLMWindowDataset, make_windows, split_windows
    from strandwise.io.records import SequenceStore

    files = [os.path.join(YEAST, f"Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.{c}.fa.gz") for c in ("I", "VI")]
    store = SequenceStore(files)
    w, lab = make_windows(store.chrom_sizes, L)
    sp = split_windows(w, lab, valid_chroms=["I"])
    valid = sp["valid"].subset(slice(0, 48))
    return (MLMWindowDataset(store, sp["train"], seed=0), MLMWindowDataset(store, valid, 1, shuffle=False, fixed_masks=True))


def test_pretraining_loss_falls_on_real_yeast_windows_and_resumes(tmp_path):
    train, valid = _yeast_sets()
    model = build_mlm_model(CaduceusModelConfig(variant="ph", d_model=32, n_layer=2, d_state=4), seed=0)
    cfg = PretrainTrainConfig(max_steps=60, batch_size=32, validation_batch_size=48, validate_every=20,
                              checkpoint_every=30, optim=CaduceusOptimConfig(lr=8e-3, warmup_fraction=0.1))
    res = pretrain(model, train, valid, cfg, output_dir=str(tmp_path), quiet=True)
    h = res.history
    assert [r["step"] for r in h] == [20, 40, 60]
    # 12-way uniform start (ln 12 = 2.48) → below the 4-base uniform ln 4 = 1.386 on held-out chromosome I
    assert h[-1]["val_loss"] < 1.386 and h[-1]["val_loss"] < h[0]["val_loss"] + 1e-6
    assert h[-1]["val_perplexity"] == pytest.approx(math.exp(h[-1]["val_loss"]))
    assert 0.25 < h[-1]["val_accuracy"] < 1
    assert os.path.exists(tmp_path / "model" / "model.safetensors") and os.path.exists(tmp_path / "last.ckpt")
    # resume from last.ckpt and continue to 80 steps: the step count carries on
    cfg.max_steps = 80
    res2 = pretrain(build_mlm_model(CaduceusModelConfig(variant="ph", d_model=32, n_layer=2, d_state=4), seed=5),
                    train, valid, cfg, output_dir=str(tmp_path), resume=True, quiet=True)
    assert [r["step"] for r in res2.history] == [20, 40, 60, 80]
    assert res2.history[:3] == h


def test_each_epoch_draws_its_own_order():
    # Lightning calls set_epoch on samplers, not on a batch_sampler: the module must do it.
    from strandwise.data.labelled import LabelledDataset, LabelledSequences
    from strandwise.train.caduceus_module import FinetuneTrainConfig, finetune

    seen = []

    class Recording(LabelledDataset):
        def __getitem__(self, key):
            seen.append(key)
            return super().__getitem__(key)

    rng = np.random.default_rng(0)
    d = LabelledSequences(["".join(rng.choice(list("ACGT"), 20)) for _ in range(32)], np.arange(32) % 2,
                          ["0", "1"], [str(i) for i in range(32)])
    model = build_classifier(CaduceusModelConfig(kind="cnn"), 2, 20)
    cfg = FinetuneTrainConfig(max_epochs=3, batch_size=16, accelerator="cpu")
    finetune(model, Recording(d, 20, shuffle=True, seed=1), LabelledDataset(d, 20), cfg=cfg, quiet=True)
    assert sorted({k[0] for k in seen}) == [0, 1, 2]


def test_default_recipes_are_upstreams():
    """The defaults *are* the protocol (spec §6.2 pretraining, §6.3 GB fine-tuning)."""
    from strandwise.train.caduceus_module import FinetuneTrainConfig

    pt = PretrainTrainConfig()
    assert (pt.max_steps, pt.batch_size, pt.checkpoint_every, pt.seed, pt.gradient_clip_val) == (10000, 1024, 500, 2222, 1.0)
    o = pt.optim
    assert (o.lr, o.weight_decay, list(o.betas), o.warmup_fraction, o.warmup_lr_init, o.lr_min, o.warmup_prefix) == (
        8e-3, 0.1, [0.9, 0.95], 0.1, 1e-6, 1e-4, True)
    ft = FinetuneTrainConfig()
    assert (ft.max_epochs, ft.batch_size, ft.seed, ft.gradient_clip_val, ft.monitor) == (10, 256, 2222, 1.0, "accuracy")
    o = ft.optim
    assert (o.lr, o.weight_decay, list(o.betas), o.warmup_fraction, o.warmup_lr_init, o.min_lr, o.warmup_prefix) == (
        2e-3, 0.1, [0.9, 0.999], 0.01, 1e-6, pytest.approx(2e-4), False)
    assert CaduceusModelConfig().strand_protocol(True) == (True, False, False)  # PS: conjoin_train
    assert CaduceusModelConfig().strand_protocol(False) == (False, True, True)  # Ph: conjoin_test + RC aug


def test_gradients_are_clipped_to_gradient_clip_val():
    from strandwise.train._lightning import L

    class Norms(L.Callback):
        raw, clipped = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # before Lightning clips
            self.raw.append(_norm(pl_module))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # grads zeroed next step
            self.clipped.append(_norm(pl_module))

    def _norm(m):
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters() if p.grad is not None])))

    train, valid = _yeast_sets(32)
    model = build_mlm_model(CaduceusModelConfig(variant="ps", d_model=8, n_layer=1, d_state=4), seed=0)
    cfg = PretrainTrainConfig(max_steps=3, batch_size=8, gradient_clip_val=0.01, validate_every=3)
    cb = Norms()
    pretrain(model, train, None, cfg, quiet=True, callbacks=[cb])
    assert len(cb.raw) == len(cb.clipped) == 3 and min(cb.raw) > 0.01
    assert max(cb.clipped) == pytest.approx(0.01, rel=1e-3)
