"""One Cherimoya training step's gradients, eager vs replayed from make_graphed_callables, per
parameter (which gradients differ, and by how much), fp32 and bf16 autocast. Diagnostic for
TrainConfig.cuda_graph.

    python benchmarks/probe_fit_graph.py
"""

import contextlib

import torch

from strandwise import Cherimoya
from strandwise.train.losses import mixture_loss


def grads(model, X, y, ac, graphed):
    for p in model.parameters():
        p.grad = None
    ctx = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if ac else contextlib.nullcontext()
    with ctx:
        yp, yc = (graphed or model)(X)
        prof, cnt = mixture_loss(y, yp.float(), yc.float(), None, model.signal_groups)
        loss = prof.sum() + cnt.sum()
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}, yp.detach().clone()


def main():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (32, 240), generator=g)
    X = torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().contiguous().cuda()
    y = torch.poisson(torch.full((32, 1, 160), 0.5), generator=g).cuda()
    for ac in (False, True):
        model = Cherimoya(n_filters=32, n_layers=4, trimming=40, random_state=7).cuda().train()
        ge1, ye1 = grads(model, X, y, ac, None)
        ge2, ye2 = grads(model, X, y, ac, None)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if ac else contextlib.nullcontext()
        with ctx:
            torch.cuda.make_graphed_callables(model, (X.clone(),), num_warmup_iters=3, allow_unused_input=True)
        fwd = model.__dict__.pop("forward")
        gg, yg = grads(model, X, y, ac, fwd)
        gg2, _ = grads(model, X, y, ac, fwd)
        # after a weight update the replay must follow the new weights (no stale derived copies)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        ge3, ye3 = grads(model, X, y, ac, None)
        gg3, yg3 = grads(model, X, y, ac, fwd)
        print(f"   after an update: output graph-eager {(yg3.float() - ye3.float()).abs().max().item():.3e}, "
              f"grads {max((gg3[n] - ge3[n]).abs().max().item() / (ge3[n].abs().max().item() + 1e-30) for n in ge3):.1e}")
        print(f"== {'bf16' if ac else 'fp32'}: output eager-eager {(ye1 - ye2).abs().max().item():.3e} "
              f"graph-eager {(yg.float() - ye1.float()).abs().max().item():.3e}")
        for n in ge1:
            s = ge1[n].abs().max().item() + 1e-30
            print(f"  {n:32s} |g| {s:.2e}  eager-eager {(ge1[n] - ge2[n]).abs().max().item() / s:.1e}  "
                  f"graph-eager {(gg[n] - ge1[n]).abs().max().item() / s:.1e}  "
                  f"graph-graph {(gg[n] - gg2[n]).abs().max().item() / s:.1e}")


if __name__ == "__main__":
    main()
