"""CPU path A/B: the cache-chunked GELU(tanh) (``strandwise/models/cpu_gelu.py``) against
PyTorch's ``nn.GELU``, alternated in one process so both sides see the same machine load.

Each round runs ``bench_cherimoya_model.run_cpu`` (description preset, 2,114 bp, a training step
with Muon + AdamW and an inference pass) once per side; medians over the rounds. The library uses
the chunked GELU for CPU inference only; ``--train`` also routes the training step's GELUs through
it for this run (an autograd Function here: the chunked forward, PyTorch's ``gelu_backward``).

    python benchmarks/cpu_gelu_ab.py [--rounds 3 --batch 8 --iters 8] [--train] [--out results.json]
"""

import argparse
import json
import os
import statistics
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--train", action="store_true", help="chunked GELU in the training step too")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch

    import strandwise.models.cherimoya as cm
    from bench_cherimoya_model import run_cpu
    from strandwise.io.atomic import atomic_write_text

    chunked = cm._cpu_gelu_applies
    if args.train:
        from strandwise.models import cpu_gelu

        class GeluTanhTrain(torch.autograd.Function):
            @staticmethod
            def forward(ctx, z):
                out = torch.empty_like(z)
                cpu_gelu._forward_into(z, out)
                ctx.save_for_backward(z)
                return out

            @staticmethod
            def backward(ctx, grad):
                z, = ctx.saved_tensors
                return torch.ops.aten.gelu_backward(grad, z, approximate="tanh")

        def gelu_any(z, inplace=False):
            if torch.is_grad_enabled() and z.requires_grad and z.is_contiguous() and z.dtype == torch.float32:
                return GeluTanhTrain.apply(z)
            return cpu_gelu.gelu_tanh_cpu(z, inplace)

        cm.gelu_tanh_cpu = gelu_any

        def chunked(module, z):
            return z.device.type == "cpu" and not cm.has_module_hooks(module)
    res = {"machine": f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
           "torch": torch.__version__, "batch": args.batch, "iters": args.iters, "train_chunked": args.train,
           "chunked": [], "nn_gelu": []}
    for r in range(args.rounds):
        for side in ("chunked", "nn_gelu"):
            cm._cpu_gelu_applies = chunked if side == "chunked" else (lambda module, z: False)
            rows, _ = run_cpu(types.SimpleNamespace(cpu_batch=args.batch, cpu_iters=args.iters))
            res[side].append({row["case"]: round(row["ms"], 1) for row in rows})
            print(r, side, res[side][-1], flush=True)
    cm._cpu_gelu_applies = chunked
    for side in ("chunked", "nn_gelu"):
        res[side + "_median_ms"] = {case: statistics.median(x[case] for x in res[side]) for case in ("train", "infer")}
    print(json.dumps({k: v for k, v in res.items() if k.endswith("median_ms")}))
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
