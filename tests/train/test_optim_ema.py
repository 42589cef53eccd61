import math

import pytest
import torch

from strandwise import Cherimoya
from strandwise.train.ema import EMA
from strandwise.train.optim import (
    OptimizerConfig,
    build_optimizers,
    build_schedulers,
    route_parameters,
    schedule_steps,
    warmup_cosine_lambda,
)


@pytest.mark.parametrize("routing", ["description", "upstream"])
def test_routing_partitions_parameters(routing):
    m = Cherimoya(n_filters=16, n_layers=4, preset="upstream" if routing == "upstream" else "description")
    muon, adamw, sgd = route_parameters(m, routing)
    names = [n for n, _ in muon + adamw + sgd]
    assert sorted(names) == sorted(n for n, _ in m.named_parameters())
    assert len(set(names)) == len(names)
    assert len(muon) == 2 * m.n_layers and all(p.ndim == 2 for _, p in muon)
    assert all(".linear1." in n or ".linear2." in n for n, _ in muon)
    adam_names = {n for n, _ in adamw}
    assert all(f"blocks.{i}.conv.conv_weight" in adam_names for i in range(4))
    if routing == "upstream":
        assert {n for n, _ in sgd} == {"lw0", "lw1"}
    else:
        assert not sgd and {"lw0", "lw1"} <= adam_names


def test_optimizer_hyperparameters():
    m = Cherimoya(n_filters=16, n_layers=2)
    opts = build_optimizers(m, OptimizerConfig())
    assert isinstance(opts["muon"], torch.optim.Muon)
    assert opts["muon"].param_groups[0]["lr"] == 0.025 and opts["muon"].param_groups[0]["weight_decay"] == 0.03
    assert opts["adamw"].param_groups[0]["lr"] == 1e-3 and opts["adamw"].param_groups[0]["weight_decay"] == 0.0
    up = build_optimizers(m, OptimizerConfig.upstream())
    assert up["sgd"].param_groups[0]["momentum"] == 0.9


def test_schedule_values():
    base, W, D = 0.025, 10, 100
    f = warmup_cosine_lambda(base, W, D)
    assert math.isclose(base * f(0), 0.01 * base)
    assert math.isclose(base * f(5), base * (0.01 + 0.99 * 0.5))
    assert math.isclose(base * f(W), base)
    assert math.isclose(base * f(W + D), 1e-5, rel_tol=1e-9)
    assert math.isclose(base * f(W + D // 2), 1e-5 + (base - 1e-5) / 2, rel_tol=1e-9)


def test_schedulers_drive_optimizer_lr_and_sgd_constant():
    m = Cherimoya(n_filters=8, n_layers=2)
    cfg = OptimizerConfig.upstream()
    opts = build_optimizers(m, cfg)
    scheds = build_schedulers(opts, 4, 10, cfg)
    lrs = {k: [] for k in opts}
    for _ in range(20):
        for k, o in opts.items():
            lrs[k].append(o.param_groups[0]["lr"])
            o.step()
            scheds[k].step()
    assert math.isclose(lrs["adamw"][0], 1e-5)
    assert math.isclose(lrs["adamw"][4], 1e-3)
    assert math.isclose(lrs["adamw"][14], 1e-5, rel_tol=1e-6)
    assert math.isclose(lrs["sgd"][10], 1e-3) and math.isclose(lrs["sgd"][19], 1e-3)


def test_min_total_steps_stretch():
    W, D, E = schedule_steps(100, 20, OptimizerConfig.upstream())
    assert E == 200 and W == 200 and D == 100 * 198
    W, D, E = schedule_steps(10, 8, OptimizerConfig())
    assert (W, D, E) == (50, 30, 8)


def test_ema_update_apply_restore():
    m = torch.nn.Linear(3, 2)
    ema = EMA(m, 0.999)
    s0 = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    torch.testing.assert_close(ema.shadow["weight"], 0.999 * s0["weight"] + 0.001 * m.weight.detach())
    live = m.weight.detach().clone()
    v0 = m.weight._version
    ema.apply_shadow(m)
    assert m.weight._version > v0  # in-place writes advance the version counter
    torch.testing.assert_close(m.weight.detach(), ema.shadow["weight"])
    with pytest.raises(RuntimeError, match="already applied"):
        ema.apply_shadow(m)
    ema.restore(m)
    assert torch.equal(m.weight.detach(), live)
    with pytest.raises(RuntimeError):
        ema.restore(m)


def test_ema_update_is_the_per_tensor_formula_bit_for_bit():
    """The multi-tensor update computes exactly ``s.mul_(d).add_(p, alpha=1 - d)`` per tensor,
    frozen (requires_grad False) parameters left out."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Conv1d(7, 3, 5))
    m[1].bias.requires_grad_(False)
    ema = EMA(m, 0.97, warmup=True)
    want = {k: v.clone() for k, v in ema.shadow.items()}
    assert "1.bias" not in want
    for step in range(4):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
        d = ema.current_decay()
        params = dict(m.named_parameters())
        for k in want:
            want[k].mul_(d).add_(params[k].detach(), alpha=1.0 - d)
        ema.update(m)
        for k in want:
            assert torch.equal(ema.shadow[k], want[k]), (step, k)


def test_ema_warmup_decay_ramp():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, 0.999, warmup=True)
    assert math.isclose(ema.current_decay(), 0.1)
    for _ in range(5):
        ema.update(m)
    assert math.isclose(ema.current_decay(), 6 / 15)
    ema.num_updates = 100000
    assert ema.current_decay() == 0.999


def test_ema_follows_model_to_another_device():
    """The trainer moves the model after the EMA is made; the shadow must follow (meta device
    stands in for a GPU here)."""
    m = torch.nn.Linear(3, 2)
    ema = EMA(m, 0.9)
    m.to("meta")
    ema.update(m)
    assert ema.shadow["weight"].device.type == "meta"
