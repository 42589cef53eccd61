"""Caduceus on CUDA (Triton selective scan) vs the CPU reference path: outputs, gradients, RC."""

import pytest
import torch

from strandwise.models.caduceus import CaduceusForMaskedLM, published_config

pytestmark = pytest.mark.gpu

COMP = torch.arange(16)
COMP[7], COMP[8], COMP[9], COMP[10] = 10, 9, 8, 7


def _small(rcps=True, n_layer=2, d_model=64):
    cfg = published_config("caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3")
    cfg.d_model, cfg.n_layer, cfg.rcps = d_model, n_layer, rcps
    return cfg


@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("L", [1, 257, 1024])
def test_forward_backward_gpu_matches_cpu(rcps, L):
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(_small(rcps))
    ids = torch.randint(7, 12, (2, L))
    labels = torch.where(torch.rand(2, L) < 0.3, ids, torch.full_like(ids, -100))
    out_cpu = model(ids)
    loss_cpu = torch.nn.functional.cross_entropy(out_cpu.logits.reshape(-1, 16), labels.reshape(-1), ignore_index=-100)
    loss_cpu.backward()
    grads_cpu = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    gpu = model.cuda()
    out = gpu(ids.cuda())
    torch.testing.assert_close(out.logits.cpu(), out_cpu.logits.detach(), atol=2e-4, rtol=2e-4)
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 16), labels.cuda().reshape(-1), ignore_index=-100)
    loss.backward()
    for n, p in gpu.named_parameters():
        if n in grads_cpu:
            torch.testing.assert_close(p.grad.cpu(), grads_cpu[n], atol=5e-4, rtol=5e-3, msg=n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_model_is_rc_equivariant(dtype):
    torch.manual_seed(1)
    model = CaduceusForMaskedLM(_small(True, n_layer=3)).cuda()
    ids = torch.randint(7, 11, (2, 777), device="cuda")
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        a = model(ids).logits.float()
        b = model(COMP.cuda()[ids.flip(-1)]).logits.float().flip(1)[..., COMP.cuda()]
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def test_gradient_checkpointing_same_gradients_on_gpu():
    torch.manual_seed(2)
    cfg = _small(True, n_layer=4)
    model = CaduceusForMaskedLM(cfg).cuda()
    ids = torch.randint(7, 12, (1, 4096), device="cuda")

    def grads():
        model.zero_grad()
        model(ids).logits.float().square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    for m in model.modules():
        if hasattr(m, "gradient_checkpointing"):
            m.gradient_checkpointing = True
    ckpt = grads()
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_fused_inner_only_outside_checkpointed_blocks():
    """Checkpointed blocks take the plain mixer path (checkpointing recomputes them already);
    the others take the fused inner function; gradients agree either way."""
    from strandwise.kernels import mamba_inner as mi

    torch.manual_seed(3)
    model = CaduceusForMaskedLM(_small(True, n_layer=4)).cuda().train()
    ids = torch.randint(7, 12, (2, 1500), device="cuda")
    backbone = next(m for m in model.modules() if hasattr(m, "gradient_checkpointing_blocks"))
    real, calls = mi.MambaInnerFn.apply, []

    def spy(*a):
        calls.append(1)
        return real(*a)

    def run(ckpt, blocks):
        backbone.gradient_checkpointing, backbone.gradient_checkpointing_blocks = ckpt, blocks
        calls.clear()
        model.zero_grad()
        mi.MambaInnerFn.apply = spy
        try:
            model(ids).logits.float().square().mean().backward()
        finally:
            mi.MambaInnerFn.apply = real
        return len(calls), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    n_none, g_none = run(False, None)
    n_all, g_all = run(True, None)
    n_half, g_half = run(True, 2)
    assert n_none > 0 and n_all == 0 and n_half == n_none // 2
    for a, b, c in zip(g_none, g_all, g_half):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=2e-3)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=2e-3)
