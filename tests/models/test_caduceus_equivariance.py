"""RC equivariance of every RCPS piece (spec §9.1, upstream's test list) and the §4.4 golden order.

Shared setup of §9.1: toy vocabulary {[CLS]:0, [MASK]:1, A:2, C:3, G:4, T:5, N:6}, complement
A↔T (2↔5), C↔G (3↔4), vocab 12 padded to 16 with identity complements, ids uniform in [1, 7),
seed 0. Sizes are reduced from upstream's GPU grid to keep the CPU suite fast.
"""

import itertools

import pytest
import torch
from torch import nn

from strandwise.models.caduceus import (
    BiMambaWrapper,
    CaduceusConfig,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
    CaduceusProjector,
    DNAEmbeddingModelCaduceus,
    RCPSAddNormWrapper,
    RCPSEmbedding,
    RCPSLMHead,
    RCPSMambaBlock,
    RCPSWrapper,
    Caduceus,
    collapse_strands,
    pool_hidden,
    rc,
    rc_half,
    strand_features,
    strand_invariant_pool,
    strand_invariant_pool_concat,
)
from strandwise.models.mamba import RMSNorm

TOY_COMP = {2: 5, 3: 4, 4: 3, 5: 2}
COMP16 = torch.tensor([TOY_COMP.get(i, i) for i in range(16)])
TOL = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2), torch.float64: (1e-10, 1e-10)}


def toy_ids(B, L, seed=0):
    return torch.randint(1, 7, (B, L), generator=torch.Generator().manual_seed(seed))


def rc_ids(ids):
    return COMP16[ids.flip(-1)]


def toy_config(d, n_layer, **kw):
    base = dict(d_model=d, n_layer=n_layer, vocab_size=12, rcps=True, complement_map=TOY_COMP,
                residual_in_fp32=False, fused_add_norm=True, ssm_cfg={"d_state": 8})
    base.update(kw)
    return CaduceusConfig(**base)


def close(a, b, dtype=torch.float32):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ §9.1 #1 embedding
def test_1_embedding():
    torch.manual_seed(0)
    emb = RCPSEmbedding(16, 256, COMP16.tolist())
    x = toy_ids(4, 512)
    out = emb(x)
    assert out.shape == (4, 512, 512)
    close(out, rc(emb(rc_ids(x))))
    # local form: [E[v] | flip_C(E[comp v])]
    E = emb.embedding.weight
    torch.testing.assert_close(out[0, 0], torch.cat([E[x[0, 0]], E[COMP16[x[0, 0]]].flip(-1)]))


# ------------------------------------------------------------------ §9.1 #2 wrapper
class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d, bias=False), nn.ReLU(), nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_2_wrapper(dtype):
    torch.manual_seed(0)
    w = RCPSWrapper(MLP(128)).to(dtype)
    x = torch.randn(2, 1024, 256, dtype=dtype)
    y = w(x)
    assert y.shape == x.shape
    close(y, rc(w(rc(x))), dtype)
    # W(X) = [f(X_f) | RC(f(RC(X_r)))]
    close(y, torch.cat([w.submodule(x[..., :128]), rc(w.submodule(rc(x[..., 128:])))], -1), dtype)
    with torch.no_grad():  # the sequential-strand inference path gives the same numbers
        close(w(x), y, dtype)


# ------------------------------------------------------------------ §9.1 #3 add+norm wrapper
@pytest.mark.parametrize("prenorm", [False, True])
def test_3_add_norm_wrapper(prenorm):
    torch.manual_seed(0)
    norm = RCPSAddNormWrapper(RMSNorm(64))
    with torch.no_grad():
        norm.submodule.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 100, 128).bfloat16()
    out = norm(x, None, prenorm=prenorm)
    out_rc = norm(rc(x), None, prenorm=prenorm)
    if prenorm:
        close(out[0], rc(out_rc[0]), torch.bfloat16)
        close(out[1], rc(out_rc[1]), torch.bfloat16)
    else:
        close(out, rc(out_rc), torch.bfloat16)


# ------------------------------------------------------------------ §9.1 #4 Mamba block
@pytest.mark.parametrize("bidirectional,fused", list(itertools.product([True, False], [True, False])))
@pytest.mark.parametrize("with_residual", [False, True])
def test_4_mamba_block(bidirectional, fused, with_residual):
    torch.manual_seed(0)
    d = 16
    block = RCPSMambaBlock(d, RCPSWrapper(BiMambaWrapper(d, bidirectional=bidirectional, d_state=8)),
                           fused_add_norm=fused, residual_in_fp32=True)
    x = torch.randn(2, 64, 2 * d)
    res = x.clone() if with_residual else None
    h, r = block(x, res)
    h_rc, r_rc = block(rc(x), rc(res) if res is not None else None)
    close(h, rc(h_rc))
    close(r, rc(r_rc))
    assert r.dtype == torch.float32


# ------------------------------------------------------------------ §9.1 #5 LM head
@pytest.mark.parametrize("B,L,d", [(2, 1, 2), (4, 1024, 128), (2, 2048, 256)])
def test_5_lm_head(B, L, d):
    torch.manual_seed(0)
    head = RCPSLMHead(COMP16[:12].tolist(), 12, d)
    x = torch.randn(B, L, 2 * d)
    logits = head(x)
    assert logits.shape == (B, L, 12)
    comp = COMP16[:12]
    close(logits, logits_rc := head(rc(x)).flip(1)[..., comp])
    close(logits.softmax(-1), logits_rc.softmax(-1))


# ------------------------------------------------------------------ §9.1 #6 backbone, #7 MLM
GRID = [(2, 64, 1, 16, True, True), (2, 96, 2, 32, True, False), (4, 40, 3, 16, False, True)]


@pytest.mark.parametrize("B,L,n_layer,d,bidirectional,tie", GRID)
def test_6_backbone(B, L, n_layer, d, bidirectional, tie):
    torch.manual_seed(0)
    model = Caduceus(toy_config(d, n_layer, bidirectional=bidirectional, bidirectional_weight_tie=tie))
    x = toy_ids(B, L)
    out = model(x).last_hidden_state
    assert out.shape == (B, L, 2 * d)
    close(out, rc(model(rc_ids(x)).last_hidden_state))


@pytest.mark.parametrize("n_layer", [1, 3, 4])
@pytest.mark.parametrize("fused", [True, False])
def test_7_masked_lm(n_layer, fused):
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(toy_config(16, n_layer, fused_add_norm=fused))
    x = toy_ids(2, 50)
    logits = model(x).logits
    assert logits.shape == (2, 50, 16) and logits.dtype == torch.float32
    logits_rc = model(rc_ids(x)).logits.flip(1)[..., COMP16]
    close(logits, logits_rc)
    close(logits.softmax(-1), logits_rc.softmax(-1))


# ------------------------------------------------------------------ §9.1 #8 collapse
def test_8_collapse_invariance():
    torch.manual_seed(0)
    model = Caduceus(toy_config(16, 2)).half() if False else Caduceus(toy_config(16, 2))
    x = toy_ids(2, 128)
    c = collapse_strands(model(x).last_hidden_state)
    c_rc = collapse_strands(model(rc_ids(x)).last_hidden_state)
    close(c, c_rc)  # position by position, no flip


# ------------------------------------------------------------------ §9.2 alignment of the RC half
def test_rc_half_alignment():
    torch.manual_seed(0)
    model = Caduceus(toy_config(16, 2)).double()
    x = toy_ids(2, 30)
    h, h_rc = model(x).last_hidden_state, model(rc_ids(x)).last_hidden_state
    # flip_C(X_r(x))[t] = X_f(rc x)[L-1-t]
    torch.testing.assert_close(rc_half(h), h_rc[..., :16].flip(1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rc_half(h, aligned=False), h[..., 16:].flip(-1).flip(-2))
    # g(rc x)[t] = g(x)[L-1-t]
    torch.testing.assert_close(strand_features(h_rc), strand_features(h).flip(1), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ §9.2 golden order (swap)
class ToyDirectional(nn.Module):
    """Direction-sensitive toy mixer: causal cumulative sum of a linear map."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return torch.cumsum(self.lin(x), dim=1) / x.shape[1]


def _rms(x, w):
    return x * (x.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt() * w


def _unrolled(model, ids):
    """Independent implementation of the §4.4 recurrence (published order)."""
    bb = model.backbone
    E = bb.embeddings.word_embeddings.embedding.weight
    d = E.shape[1]

    def swap(x):
        return torch.cat([x[..., d:], x[..., :d]], -1)

    def norm_rc(s, w):
        return torch.cat([_rms(s[..., :d], w), rc(_rms(rc(s[..., d:]), w))], -1)

    def W(f, x):
        return torch.cat([f(x[..., :d]), rc(f(rc(x[..., d:])))], -1)

    h = torch.cat([E[ids], rc(E[rc_ids(ids)])], -1)  # Emb = [E[ids] | RC(E[rc(ids)])]
    r = None
    for layer in bb.layers:
        s = h if r is None else h + r
        r = swap(s)
        h = W(layer.mixer.submodule, norm_rc(swap(s), layer.norm.weight))
    return norm_rc(h + r, bb.norm_f.weight)


@pytest.mark.parametrize("mixer", ["toy", "bimamba"])
def test_golden_published_order_swaps_halves(mixer):
    torch.manual_seed(0)
    model = Caduceus(toy_config(8, 3)).double()
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.norm.weight.uniform_(0.5, 1.5)
            if mixer == "toy":
                layer.mixer.submodule = ToyDirectional(8).double()
        model.backbone.norm_f.weight.uniform_(0.5, 1.5)
    ids = toy_ids(2, 12)
    with torch.no_grad():
        ours = model(ids).last_hidden_state
        golden = _unrolled(model, ids)
        torch.testing.assert_close(ours, golden, rtol=0, atol=1e-10)
        for layer in model.backbone.layers:
            layer.order = "natural"
        natural = model(ids).last_hidden_state
    assert (natural - ours).abs().max() > 1e-3  # nobody may "fix" the swap silently
    # both orders are equivariant
    with torch.no_grad():
        torch.testing.assert_close(natural, rc(model(rc_ids(ids)).last_hidden_state), rtol=1e-10, atol=1e-10)


def test_published_order_default_follows_fused_add_norm():
    assert Caduceus(toy_config(8, 1)).backbone.layers[0].order == "published"
    assert Caduceus(toy_config(8, 1, fused_add_norm=False)).backbone.layers[0].order == "natural"


# ------------------------------------------------------------------ BiMamba flip consistency
@pytest.mark.parametrize("strategy", ["add", "ew_multiply"])
def test_bimamba_reverse_kernels_equal_explicit_flips(strategy):
    torch.manual_seed(0)
    bi = BiMambaWrapper(12, bidirectional_strategy=strategy, d_state=4)
    u = torch.randn(2, 37, 12)
    fwd = bi.mamba_fwd(u)
    rev = bi.mamba_rev(u.flip(1)).flip(1)
    expect = fwd + rev if strategy == "add" else fwd * rev
    close(bi(u), expect)
    assert bi.mamba_rev.in_proj.weight is bi.mamba_fwd.in_proj.weight
    assert bi.mamba_rev.out_proj.weight is bi.mamba_fwd.out_proj.weight
    assert bi.mamba_rev.x_proj.weight is not bi.mamba_fwd.x_proj.weight


# ------------------------------------------------------------------ heads and pooling
def test_pooling_masked_mean_mean_all_first_last_with_left_padding():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # [[0,1,2,3],[4,5,6,7]]
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool_hidden(h, mask, "mean").flatten().tolist() == [2.5, 5.5]
    assert pool_hidden(h, mask, "mean_all").flatten().tolist() == [1.5, 5.5]
    assert pool_hidden(h, mask, "first").flatten().tolist() == [2.0, 4.0]
    assert pool_hidden(h, mask, "last").flatten().tolist() == [3.0, 7.0]
    assert pool_hidden(-h, mask, "max").flatten().tolist() == [-2.0, -4.0]
    with pytest.raises(ValueError, match="pooling mode"):
        pool_hidden(h, mask, "median")


def test_sequence_classification_ps_is_rc_invariant_and_ignores_padding():
    torch.manual_seed(0)
    model = CaduceusForSequenceClassification(toy_config(16, 2), num_labels=3).double()
    x = toy_ids(2, 40).clamp(min=2)
    ones = torch.ones_like(x)  # toy id 4 is G here, not [PAD]: give the mask explicitly
    logits = model(x, attention_mask=ones).logits
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, model(rc_ids(x), attention_mask=ones).logits, rtol=1e-10, atol=1e-10)
    out = model(x, attention_mask=ones, labels=torch.tensor([0, 2]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_ph_conjoined_classification_is_rc_invariant():
    torch.manual_seed(0)
    cfg = CaduceusConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4}, complement_map=TOY_COMP)
    model = CaduceusForSequenceClassification(cfg, num_labels=2, conjoin=True).double()
    x = toy_ids(2, 33).clamp(min=2)
    ones = torch.ones_like(x)
    torch.testing.assert_close(model(x, ones).logits, model(rc_ids(x), ones).logits, rtol=1e-10, atol=1e-10)


def test_dna_embedding_model_shapes_and_alignment():
    torch.manual_seed(0)
    ps = DNAEmbeddingModelCaduceus(toy_config(16, 1)).double()
    x = toy_ids(2, 20)
    h, state = ps(x)
    assert h.shape == (2, 20, 16, 2) and state is None
    h_rc, _ = ps(rc_ids(x))
    # aligned: slice 1 of x equals slice 0 of rc(x), flipped over L, channels as-is
    torch.testing.assert_close(h[..., 1], h_rc[..., 0].flip(1), rtol=1e-10, atol=1e-10)
    up = DNAEmbeddingModelCaduceus(toy_config(16, 1), aligned=False).double()
    up.load_state_dict(ps.state_dict())
    torch.testing.assert_close(up(x)[0][..., 1], h_rc[..., 0], rtol=1e-10, atol=1e-10)
    cfg = CaduceusConfig(d_model=16, n_layer=1, vocab_size=12, ssm_cfg={"d_state": 4}, complement_map=TOY_COMP)
    ph = DNAEmbeddingModelCaduceus(cfg, conjoin_test=True)
    assert ph.train()(x)[0].shape == (2, 20, 16)
    assert ph.eval()(x)[0].shape == (2, 20, 16, 2)
    both = torch.stack([x, rc_ids(x)], -1)
    torch.testing.assert_close(ph(both)[0], ph(x)[0])


def test_projector_parameter_count_and_strand_invariance():
    proj = CaduceusProjector()
    assert sum(p.numel() for p in proj.parameters()) == 1_051_136
    torch.manual_seed(0)
    model = Caduceus(toy_config(256, 1)).double().eval()
    proj = proj.double().eval()
    x = toy_ids(2, 24)
    h, h_rc = model(x).last_hidden_state, model(rc_ids(x)).last_hidden_state
    p1, p2 = strand_invariant_pool(h), strand_invariant_pool(h_rc)
    assert p1.shape == (2, 256)
    torch.testing.assert_close(p1, p2, rtol=1e-10, atol=1e-10)
    c1, c2 = strand_invariant_pool_concat(h), strand_invariant_pool_concat(h_rc)
    assert c1.shape == (2, 512)
    torch.testing.assert_close(c1, c2, rtol=1e-10, atol=1e-10)
    out = proj(c1)
    assert out.shape == (2, 512)
    torch.testing.assert_close(out, proj(c2), rtol=1e-9, atol=1e-9)
    # the [B, L, d, 2] aligned output of DNAEmbeddingModelCaduceus pools the same way
    stacked = torch.stack([h[..., :256], rc_half(h)], -1)
    torch.testing.assert_close(strand_invariant_pool(stacked), p1)
    with pytest.raises(ValueError, match="expects"):
        proj(torch.zeros(2, 256, dtype=torch.float64))
