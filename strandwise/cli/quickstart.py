"""``strandwise quickstart`` — fit → evaluate → predict on the bundled real yeast ATAC-seq example.

Uses ``examples/yeast_atac/config.json`` (Buenrostro-style ATAC-seq of S. cerevisiae, SRR1822137,
on the R64-1-1 genome) with a small model and few epochs so it finishes in minutes on a laptop
CPU, then prints where the outputs are and how to run the full-size model.
"""

from __future__ import annotations

import os
import time

#: What the quick run changes relative to the example config (full size = the config as is).
QUICK_OVERRIDES = {
    # 1,114 bp in / 500 bp out and 7 blocks (reach 137 bp < trimming 307), 32 filters, 6 epochs:
    # about 5x less work per step than the example's full 2,114 / 1,000 bp, 96-filter, 9-block
    # model, so a 2-core CPU trains it in a few minutes. --full runs the config as written.
    "model": {"n_filters": 32, "n_layers": 7},
    "train": {"max_epochs": 6, "batch_size": 32, "optimizer": {"n_warmup_epochs": 1, "adam_lr": 0.004}},
    "data": {"in_window": 1114, "out_window": 500, "max_jitter": 128},
}


def register(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="train, evaluate and predict on the bundled real yeast ATAC-seq example (minutes, CPU)",
        description=__doc__,
    )
    p.add_argument("--output-dir", default="strandwise_quickstart", help="where to write (default: %(default)s)")
    p.add_argument("--example", help="example folder (default: the repository's examples/yeast_atac)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--full", action="store_true", help="use the example config's full-size model and recipe")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def example_dir(explicit: str | None = None) -> str:
    if explicit:
        path = os.path.abspath(explicit)
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.normpath(os.path.join(here, "..", "..", "examples", "yeast_atac"))
    if not os.path.exists(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"example not found at {path}: run quickstart from a clone of the strandwise repository "
            "(pip install -e .) or pass --example PATH/TO/examples/yeast_atac"
        )
    return path


def run(args) -> int:
    from strandwise.cli.evaluate import run_evaluate
    from strandwise.cli.fit import run_fit
    from strandwise.cli.predict import run_predict
    from strandwise.cli.profile_config import load_fit_config

    t0 = time.perf_counter()
    ex = example_dir(args.example)
    overrides = {} if args.full else {k: dict(v) for k, v in QUICK_OVERRIDES.items()}
    overrides["output_dir"] = os.path.abspath(args.output_dir)
    overrides["name"] = "yeast_atac"
    if args.epochs is not None:
        overrides.setdefault("train", {})["max_epochs"] = args.epochs
    cfg = load_fit_config(os.path.join(ex, "config.json"), overrides)
    say = (lambda *a: None) if args.quiet else print
    say(f"strandwise quickstart: yeast ATAC-seq (SRR1822137) on S. cerevisiae R64-1-1, outputs in {cfg.out_dir}")
    run_fit(cfg, quiet=args.quiet)
    rows = run_evaluate(cfg, split="test", quiet=args.quiet)
    run_predict(cfg, chroms=cfg.data.test_chroms, quiet=args.quiet)
    minutes = (time.perf_counter() - t0) / 60
    r = rows[0]
    print(
        f"\nquickstart finished in {minutes:.1f} min. Test chromosome(s) {', '.join(cfg.data.test_chroms)}: "
        f"profile Pearson {r['profile_pearson']:.3f}, count Pearson {r['count_pearson']:.3f}, "
        f"AUROC {r['auroc']:.3f}\n"
        f"  model        {cfg.path('.torch')}\n"
        f"  training log {cfg.path('.log')}  (curves: {cfg.path('.training.png')})\n"
        f"  metrics      {cfg.path('.test.performance.tsv')}  (plots: {cfg.path('.test.profiles.png')}, "
        f"{cfg.path('.test.counts.png')})\n"
        f"  predictions  {cfg.path('.predictions')}.*.bw and .counts.tsv\n"
        f"  config       {cfg.path('.config.json')}\n"
        f"Full-size model (2,114 bp windows, 96 filters, 9 blocks, 20 epochs; slower on CPU, fast on a GPU):\n"
        f"  strandwise quickstart --full    or    strandwise fit {os.path.join(ex, 'config.json')}"
    )
    return 0
