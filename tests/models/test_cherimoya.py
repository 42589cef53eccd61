from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from strandwise.models.cherimoya import (
    CheckpointFormatError,
    CheriBlock,
    Cherimoya,
    channel_permutation_from_groups,
    validate_signal_groups,
)
from strandwise.models import cpu_chunks


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_presets_defaults_and_parameter_counts():
    d = Cherimoya()
    assert (d.n_filters, d.n_layers, d.profile_kernel_size, d.trimming) == (96, 9, 1, 557)
    assert n_params(d) == 342_724
    u = Cherimoya(preset="upstream")
    assert (u.n_filters, u.n_layers, u.trimming, u.expansion, u.residual_scale) == (128, 9, 557, 2, 0.15)
    assert n_params(u) == 613_892
    assert n_params(Cherimoya(preset="upstream", signal_groups=[2])) == 623_493
    assert u.receptive_field == 1117 and d.receptive_field == 1043
    assert d.name == "cherimoya.96.9"


@pytest.mark.parametrize("groups,K", [([1], 0), ([2], 0), ([1, 2, 2], 0), ([2], 2)])
def test_output_shapes(groups, K):
    m = Cherimoya(n_filters=16, n_layers=3, signal_groups=groups, n_control_tracks=K, trimming=30)
    X = torch.randn(2, 4, 100)
    ctl = torch.rand(2, K, 100) if K else None
    p, c = m(X, ctl)
    assert p.shape == (2, sum(groups), 40) and c.shape == (2, len(groups))
    assert m.linear.in_features == 16 + (1 if K else 0)


@pytest.mark.parametrize("bad", [[], [0], [True], [1.0], "12", [-1], [1, 0]])
def test_signal_groups_validation(bad):
    with pytest.raises(ValueError, match="non-empty list of positive ints"):
        validate_signal_groups(bad)


def test_channel_permutations():
    assert channel_permutation_from_groups([1, 2]) == [0, 2, 1]
    assert channel_permutation_from_groups([2, 1]) == [1, 0, 2]
    assert channel_permutation_from_groups([1, 2, 1, 2]) == [0, 2, 1, 3, 5, 4]


def test_bad_inputs_have_clear_errors():
    m = Cherimoya(n_filters=8, n_layers=2, trimming=10)
    with pytest.raises(ValueError, match=r"\(N, 4, L\)"):
        m(torch.zeros(2, 5, 50))
    with pytest.raises(TypeError, match="floating"):
        m(torch.zeros(2, 4, 50, dtype=torch.int8))
    with pytest.raises(ValueError, match="leaves no output"):
        m(torch.zeros(1, 4, 20))
    with pytest.raises(ValueError, match="no control tracks"):
        m(torch.zeros(1, 4, 50), torch.zeros(1, 1, 50))
    mc = Cherimoya(n_filters=8, n_layers=2, trimming=10, n_control_tracks=2)
    with pytest.raises(ValueError, match="X_ctl"):
        mc(torch.zeros(1, 4, 50))
    with pytest.raises(ValueError, match="profile_kernel_size"):
        Cherimoya(profile_kernel_size=4)
    with pytest.raises(ValueError, match="preset"):
        Cherimoya(preset="nope")


def test_init_statistics_and_seeding_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = Cherimoya(n_filters=64, n_layers=2, random_state=7)
    b = Cherimoya(n_filters=64, n_layers=2, random_state=7)
    c = Cherimoya(n_filters=64, n_layers=2, random_state=8)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(p, q), n
        if n.endswith("weight") and p.numel() > 100:
            assert not torch.equal(p, r)
            assert abs(p.std().item() - 0.02) < 0.003
        if n.endswith("bias"):
            assert torch.all(p == 0)
    assert torch.all(a.lw0 == 1) and torch.all(a.lw1 == 1)
    # module default inits consume the global RNG, but the seeded draws do not depend on it
    torch.set_rng_state(before)
    torch.manual_seed(999)
    d = Cherimoya(n_filters=64, n_layers=2, random_state=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), d.parameters()))


def test_block_zero_mlp_is_identity_and_no_grad_matches_grad():
    blk = CheriBlock(16, 2)
    x = torch.randn(2, 30, 16)
    with torch.no_grad():
        blk.linear2.weight.zero_()
    assert torch.equal(blk(x), x)
    blk = CheriBlock(16, 4)
    with torch.no_grad():
        a = blk(x)
    torch.testing.assert_close(a, blk(x).detach(), atol=1e-6, rtol=1e-5)
    assert blk.conv_weight is blk.conv.conv_weight


def test_count_head_controls_window_rule():
    torch.manual_seed(0)
    m = Cherimoya(n_filters=8, n_layers=2, n_control_tracks=2, trimming=20, random_state=0)
    X = torch.randn(1, 4, 100)
    ctl = torch.rand(1, 2, 100)
    _, c0 = m(X, ctl)
    inside = ctl.clone()
    inside[0, 1, 50] += 7.0
    _, c1 = m(X, inside)
    expected = m.linear.weight[:, -1] * (torch.log(inside[0, :, 20:80].sum() + 1) - torch.log(ctl[0, :, 20:80].sum() + 1))
    torch.testing.assert_close(c1 - c0, expected[None], atol=1e-5, rtol=1e-4)
    outside = ctl.clone()
    outside[0, 0, 5] += 7.0
    _, c2 = m(X, outside)
    torch.testing.assert_close(c2, c0)


@pytest.mark.parametrize("preset,reach", [("upstream", 558), ("description", 521)])
def test_receptive_field_with_frozen_norm_statistics(preset, reach, monkeypatch):
    """With the norm's statistics frozen (treated as constants), outputs only see ±reach bp."""
    import strandwise.kernels.conv_norm as cn

    real = cn._cheri_conv_norm_cpu

    def frozen(x, w, d, eps=1e-3):
        out = real(x, w, d, eps)
        y = cn._dilated_conv(x.float(), w.float(), d)
        mu = y.mean(dim=(1, 2), keepdim=True).detach()
        r = torch.rsqrt(y.var(dim=(1, 2), unbiased=False, keepdim=True) + eps).detach()
        return ((y - mu) * r).to(x.dtype) + 0 * out

    # the block's conv module calls the dispatcher, which under autograd runs its own Function
    monkeypatch.setattr(cn, "fused_dilated_conv_norm", frozen)
    m = Cherimoya(n_filters=8, preset=preset, random_state=0)
    L = 1300
    X = torch.randn(1, 4, L, requires_grad=True)
    p, _ = m(X)
    j = 60
    p[0, 0, j].backward()
    g = X.grad[0].abs().sum(0)
    centre = j + m.trimming
    far = torch.cat([g[: centre - reach], g[centre + reach + 1 :]])
    assert torch.all(far == 0)
    assert g[centre - reach] > 0 or g[centre + reach] > 0


def test_save_load_round_trip(tmp_path):
    m = Cherimoya(n_filters=16, n_layers=3, signal_groups=[2], random_state=0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "m.torch"
    m.save(path)
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"config", "state_dict", "strandwise"}
    assert list(payload["config"]) == [
        "n_filters", "n_layers", "signal_groups", "n_control_tracks", "expansion",
        "residual_scale", "name", "trimming", "verbose",
    ]
    assert payload["config"]["verbose"] is False
    assert payload["strandwise"] == {"profile_kernel_size": 1}
    keys = list(payload["state_dict"])
    assert keys[:5] == ["lw0", "lw1", "iconv.weight", "iconv.bias", "blocks.0.conv_weight"]
    assert keys[-4:] == ["fconv.weight", "fconv.bias", "linear.weight", "linear.bias"]
    m2 = Cherimoya.load(path)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    X = torch.randn(2, 4, 1200)
    for a, b in zip(m(X), m2(X)):
        assert torch.equal(a, b)
    up = Cherimoya(n_filters=8, n_layers=2, preset="upstream")
    up.save(tmp_path / "u.torch")
    assert set(torch.load(tmp_path / "u.torch", weights_only=True)) == {"config", "state_dict"}


def _gelu_tanh(z):
    return 0.5 * z * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (z + 0.044715 * z**3)))


def independent_forward(sd, cfg, X):
    """Spec §1.4 written from scratch with F.conv1d (channels-first), for parity."""
    h = _gelu_tanh(F.conv1d(X, sd["iconv.weight"], sd["iconv.bias"], padding=10))
    for i in range(cfg["n_layers"]):
        d = 2**i
        w = sd[f"blocks.{i}.conv_weight"]
        y = F.conv1d(h, w.T.unsqueeze(1), padding=d, dilation=d, groups=h.shape[1])
        mu = y.mean(dim=(1, 2), keepdim=True)
        var = y.var(dim=(1, 2), unbiased=False, keepdim=True)
        xn = (y - mu) / torch.sqrt(var + 1e-3)
        z = torch.einsum("ncl,hc->nhl", xn, sd[f"blocks.{i}.linear1.weight"])
        z = torch.einsum("nhl,ch->ncl", _gelu_tanh(z), sd[f"blocks.{i}.linear2.weight"])
        h = h + cfg["residual_scale"] * z
    t = cfg["trimming"]
    k = sd["fconv.weight"].shape[-1]
    prof = F.conv1d(h, sd["fconv.weight"], sd["fconv.bias"], padding=k // 2)[:, :, t : X.shape[-1] - t]
    f = h[:, :, t : X.shape[-1] - t].mean(-1)
    return prof, f @ sd["linear.weight"].T + sd["linear.bias"]


def upstream_payload(F_=128, n_layers=9, k=75, legacy=True, seed=0):
    """A CATv1-style file built by hand from the spec §1.9 key list."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    sd = OrderedDict()
    sd["lw0"] = torch.ones(1)
    sd["lw1"] = torch.ones(1)
    sd["iconv.weight"] = r(F_, 4, 21)
    sd["iconv.bias"] = r(F_)
    for i in range(n_layers):
        sd[f"blocks.{i}.conv_weight" if legacy else f"blocks.{i}.conv.conv_weight"] = r(3, F_) * 10
        sd[f"blocks.{i}.linear1.weight"] = r(2 * F_, F_)
        sd[f"blocks.{i}.linear2.weight"] = r(F_, 2 * F_)
    sd["fconv.weight"] = r(1, F_, k)
    sd["fconv.bias"] = r(1)
    sd["linear.weight"] = r(1, F_)
    sd["linear.bias"] = r(1)
    config = {
        "n_filters": F_, "n_layers": n_layers, "signal_groups": [1], "n_control_tracks": 0,
        "expansion": 2, "residual_scale": 0.15, "name": "ENCSR000XXX.catv1", "trimming": 557,
        "verbose": False,
    }
    return {"config": config, "state_dict": sd}


def test_upstream_catv1_checkpoint_loads_and_matches_independent_forward(tmp_path):
    payload = upstream_payload()
    path = tmp_path / "catv1.torch"
    torch.save(payload, path)
    m = Cherimoya.load(path)
    assert m.profile_kernel_size == 75 and m.n_filters == 128
    X = F.one_hot(torch.randint(0, 4, (2, 2114), generator=torch.Generator().manual_seed(1)), 4).permute(0, 2, 1).float()
    with torch.no_grad():
        p, c = m(X)
        p_ref, c_ref = independent_forward(payload["state_dict"], payload["config"], X)
    assert p.shape == (2, 1, 1000)
    torch.testing.assert_close(p, p_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-5, rtol=0)
    # re-saving emits the legacy key spelling in the same place and exactly two top-level keys
    m.save(tmp_path / "resaved.torch")
    again = torch.load(tmp_path / "resaved.torch", weights_only=True)
    assert set(again) == {"config", "state_dict"}
    assert list(again["state_dict"]) == list(payload["state_dict"])


def test_both_key_spellings_submodule_wins_and_payload_untouched():
    payload = upstream_payload(F_=8, n_layers=2, k=75)
    sd = payload["state_dict"]
    sub = torch.full((3, 8), 0.5)
    sd["blocks.1.conv.conv_weight"] = sub
    before = list(sd)
    m = Cherimoya.from_payload(payload)
    assert list(payload["state_dict"]) == before  # caller's dict not mutated
    assert torch.equal(m.blocks[1].conv_weight.detach(), sub)
    assert torch.equal(m.blocks[0].conv_weight.detach(), sd["blocks.0.conv_weight"])


def test_unknown_and_inconsistent_checkpoints_rejected(tmp_path):
    p = tmp_path / "x.torch"
    torch.save({"weights": 1}, p)
    with pytest.raises(CheckpointFormatError, match="not a Cherimoya checkpoint"):
        Cherimoya.load(p)
    payload = upstream_payload(F_=8, n_layers=2)
    payload["config"]["n_outputs"] = 1
    with pytest.raises(CheckpointFormatError, match="n_outputs"):
        Cherimoya.from_payload(payload)
    payload = upstream_payload(F_=8, n_layers=2)
    payload["config"]["n_layers"] = 3
    with pytest.raises(CheckpointFormatError, match="n_layers=3"):
        Cherimoya.from_payload(payload)
    p.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointFormatError, match="not a readable"):
        Cherimoya.load(p)
    with pytest.raises(FileNotFoundError):
        Cherimoya.load(tmp_path / "missing.torch")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.torch")
    with pytest.raises(CheckpointFormatError):
        Cherimoya.load(tmp_path / "module.torch")


def test_set_inference_fp32_dot_validates_and_reaches_every_block():
    m = Cherimoya(n_filters=16, n_layers=3, trimming=20)
    assert m.inference_fp32_dot == "bf16" and all(b.fp32_dot == "bf16" for b in m.blocks)
    assert m.set_inference_fp32_dot("ieee") is m
    assert all(b.fp32_dot == "ieee" for b in m.blocks)
    with pytest.raises(ValueError, match="one of"):
        m.set_inference_fp32_dot("fp64")
    # runtime only: not in the state dict, and the CPU path ignores it (same outputs)
    assert not any("fp32_dot" in k for k in m.state_dict())
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 100)), 4).transpose(1, 2).float()
    with torch.no_grad():
        a = m(X)
        b = m.set_inference_fp32_dot("bf16")(X)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_cpu_path_chunks_the_batch_without_changing_results(monkeypatch):
    # the CPU forward runs large batches in chunks of examples (speed: cache and allocator);
    # outputs and gradients must be those of the whole batch at once
    m = Cherimoya(n_filters=16, n_layers=3, trimming=20, signal_groups=[1, 2], n_control_tracks=2,
                  random_state=0)
    assert m.cpu_chunk_size(200) == cpu_chunks.CPU_CHUNK_BYTES // (200 * 2 * 16 * 4)
    g = torch.Generator().manual_seed(0)
    X = F.one_hot(torch.randint(0, 4, (7, 200), generator=g), 4).transpose(1, 2).float()
    ctl = torch.rand(7, 2, 200, generator=g)
    wp = torch.randn(7, 3, 160, generator=g)

    def run():
        m.zero_grad()
        yp, yc = m(X, ctl)
        ((yp * wp).sum() + yc.sum()).backward()
        return yp.detach(), yc.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    whole = run()
    calls = []
    real = m._forward_cpu
    monkeypatch.setattr(m, "_forward_cpu", lambda a, b=None: calls.append(a.shape[0]) or real(a, b))
    monkeypatch.setattr(cpu_chunks, "CPU_CHUNK_BYTES", 3 * 200 * 2 * 16 * 4)  # chunks of 3
    chunked = run()
    assert calls == [3, 3, 1]
    assert torch.allclose(chunked[0], whole[0], atol=1e-6) and torch.allclose(chunked[1], whole[1], atol=1e-6)
    assert chunked[2].keys() == whole[2].keys()
    for k in whole[2]:
        assert torch.allclose(chunked[2][k], whole[2][k], rtol=1e-4, atol=1e-6), k


def test_cpu_chunking_is_off_while_hooks_are_registered(monkeypatch):
    # DeepLIFT/SHAP and activation-capture hooks expect one call per module per forward
    m = Cherimoya(n_filters=16, n_layers=2, trimming=20, random_state=0)
    monkeypatch.setattr(cpu_chunks, "CPU_CHUNK_BYTES", 2 * 200 * 2 * 16 * 4)  # chunks of 2
    X = F.one_hot(torch.randint(0, 4, (5, 200)), 4).transpose(1, 2).float()
    seen = []
    h = m.blocks[0].activation.register_forward_hook(lambda mod, i, o: seen.append(o.shape[0]))
    with torch.no_grad():
        m(X)
    h.remove()
    assert seen == [5]
    calls = []
    real = m._forward_cpu
    monkeypatch.setattr(m, "_forward_cpu", lambda a, b=None: calls.append(a.shape[0]) or real(a, b))
    with torch.no_grad():
        m(X)
    assert calls == [2, 2, 1]


def test_gpu_chunk_size_rule(monkeypatch):
    """``STRANDWISE_GPU_INFER_CHUNK``: chunks only under no-grad, only when set and smaller than
    the batch."""
    import strandwise.models.cherimoya as cm

    m = Cherimoya(n_filters=8, n_layers=2, random_state=0)
    monkeypatch.setitem(cm.GPU_INFER_CHUNK, "n", 32)
    with torch.no_grad():
        assert m.gpu_chunk_size(64) == 32 and m.gpu_chunk_size(33) == 32
        assert m.gpu_chunk_size(32) == 0
    assert m.gpu_chunk_size(64) == 0  # gradients recorded: training is never chunked here
    monkeypatch.setitem(cm.GPU_INFER_CHUNK, "n", 0)
    with torch.no_grad():
        assert m.gpu_chunk_size(64) == 0


def test_channels_last_forward_in_chunks_matches_the_whole_batch():
    """What a chunked GPU forward runs (the channels-last path through ``run_chunked`` with
    ``any_device``), here on CPU tensors: ragged chunks, both heads' outputs concatenated."""
    from strandwise.models.cpu_chunks import run_chunked

    m = Cherimoya(n_filters=16, n_layers=3, trimming=40, random_state=0).eval()
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (7, 200), generator=torch.Generator().manual_seed(0)),
                                    4).transpose(1, 2).float()
    with torch.no_grad():
        whole = m._forward_channels_last(X)
        parts = run_chunked(m, m._forward_channels_last, 3, X, None, any_device=True)
        same = run_chunked(m, m._forward_channels_last, 0, X, None, any_device=True)  # 0: no chunks
    for a, b, c in zip(whole, parts, same):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        assert torch.equal(c, a)


@pytest.mark.parametrize("value", ["x", "-2", "1.5"])
def test_gpu_infer_chunk_environment_rejects_bad_values(value):
    import os
    import subprocess
    import sys

    env = dict(os.environ, STRANDWISE_GPU_INFER_CHUNK=value)
    res = subprocess.run([sys.executable, "-c", "import strandwise.models.cherimoya"], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0 and "STRANDWISE_GPU_INFER_CHUNK must be a whole number" in res.stderr
