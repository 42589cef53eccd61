"""A/B timing of one kernel switch of the Cheri block on one GPU, alternating.

Switches (``--switch``):

* ``half_w2``: the inference megakernel with and without ``HALF_W2`` (the GELU's ½ folded into the
  cached ``(s·W2)ᵀ``, Cherimoya round 15); outputs must be bit-identical (the fold is exact). The
  Gluon MLP pass (the bf16 default on sm_90 since round 17) is switched off for this A/B.
* ``stats_rows_first``: the statistics pass's grid with the row tile varying fastest (the
  programs resident together read neighbouring rows of one example) or the example, forced for
  every dilation (by default it depends on the dilation: ``conv_norm_triton.stats_rows_first``);
  the statistics alone and the whole inference call are timed, and the largest difference of the
  block outputs is reported (the autotuner may pick another row tile for each order).

The two settings are timed alternately, ``--rounds`` times each, so clock or thermal drift falls on
both; the medians of the rounds are reported. ``--shapes`` takes ``N,L,C,d`` groups separated by
``;`` (default: the benchmark shape and the default model's widest-dilation block at its input
length). Writes JSON (atomically)::

    python benchmarks/bench_cheri_ab.py --switch half_w2 --out cheri_half_w2.json
    python benchmarks/bench_cheri_ab.py --switch stats_rows_first --out cheri_stats_rows_first.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cheri_block import bench, seeded_block_weights  # noqa: E402

from strandwise.io.atomic import atomic_write_text  # noqa: E402


def _switch(name: str):
    """(state dict, key, whether outputs must be bit-identical) of a switch; the A/B writes
    True / False there and puts the saved value back as it was (``None`` = automatic)."""
    from strandwise.kernels import cheri_infer as ci
    from strandwise.kernels import conv_norm_triton as cnt

    if name == "half_w2":
        return ci._HALF_W2, "on", True
    return cnt._STATS, "rows_first", False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switch", choices=("half_w2", "stats_rows_first"), default="half_w2")
    ap.add_argument("--shapes", default="512,1024,128,4;512,2114,96,256")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per setting")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--out", default="cheri_ab.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")

    from strandwise.kernels import cheri_infer as ci
    from strandwise.kernels import conv_norm_triton as cnt

    state, key, exact = _switch(args.switch)
    saved = state[key]
    saved_gluon = ci._GLUON["on"]
    if args.switch == "half_w2":  # a switch of the Triton MLP pass: keep bf16 off the Gluon one
        ci.set_gluon_inference(False)

    def set_on(on):
        state[key] = bool(on)

    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    rows = []
    try:
        for shape in args.shapes.split(";"):
            N, L, C, d = (int(v) for v in shape.split(","))
            cw, w1, w2 = seeded_block_weights(C)
            for label in args.dtypes.split(","):
                x = torch.randn(N, L, C, device="cuda").to(dtypes[label])
                cases = {"block": lambda: ci.cheri_block_inference(x, cw, w1, w2, d)}
                if args.switch.startswith("stats"):
                    cases["stats"] = lambda: cnt.conv_norm_stats(x, cw, d, 1e-3)
                outs = {}
                with torch.no_grad():
                    for on in (1, 0):
                        set_on(on)
                        outs[on] = ci.cheri_block_inference(x, cw, w1, w2, d).float()
                        for fn in cases.values():  # compile / autotune outside the timing
                            fn()
                    times = {(case, on): [] for case in cases for on in (1, 0)}
                    for _ in range(args.rounds):
                        for on in (1, 0):
                            set_on(on)
                            for case, fn in cases.items():
                                times[case, on].append(bench(fn))
                diff = float((outs[1] - outs[0]).abs().max())
                for (case, on), ts in times.items():
                    rows.append(dict(shape=dict(N=N, L=L, C=C, dilation=d), dtype=label, case=case,
                                     **{args.switch: on}, ms=statistics.median(ts), rounds_ms=ts,
                                     max_abs_diff_block_out=diff))
                    print(f"{N},{L},{C},{d} {label:5s} {case:5s} {args.switch}={on} "
                          f"{rows[-1]['ms']:.4f} ms  rounds " + " ".join(f"{t:.4f}" for t in ts)
                          + f"  max|Δout|={diff:.3g}", flush=True)
                if exact and diff != 0.0:
                    raise SystemExit(f"{args.switch}: outputs differ ({diff})")
                del x, outs
    finally:
        state[key] = saved
        ci.set_gluon_inference(saved_gluon)
    result = dict(gpu=torch.cuda.get_device_name(), date=datetime.date.today().isoformat(),
                  torch=torch.__version__, switch=args.switch, rows=rows)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
