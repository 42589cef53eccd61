"""``strandwise fit CONFIG`` — train a Cherimoya from files described by a JSON/YAML config."""

from __future__ import annotations

import time

from strandwise.cli.profile_config import build_model, load_fit_config, write_resolved_config


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="train a Cherimoya profile model from a config (genome, bigWigs, peaks, splits)",
        description="Train a Cherimoya from a JSON/YAML config. Writes NAME.torch (best EMA "
        "weights), NAME.final.torch, NAME.log (TSV per epoch), NAME.training.png, "
        "NAME.config.json (resolved config) and last.ckpt (for --resume) into output_dir.",
    )
    p.add_argument("config", help="JSON or YAML config file")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/last.ckpt")
    p.add_argument("--devices", type=int,
                   help="train on N devices with DDP (GPUs if present, else CPU processes); "
                   "batch_size stays the global batch, so results match one device")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    overrides = {}
    if args.devices is not None:
        if args.devices < 1:
            raise ValueError("--devices must be >= 1")
        overrides["train"] = {"devices": args.devices, "strategy": "ddp" if args.devices > 1 else "auto"}
    cfg = load_fit_config(args.config, overrides)
    result = run_fit(cfg, resume=args.resume, quiet=args.quiet)
    return 0 if result is not None else 1


def run_fit(cfg, resume: bool = False, quiet: bool = False):
    """Load data, train, and write every output of ``fit``; returns the ``FitResult``."""
    from strandwise.data.loci import load_profile_dataset, make_train_sampler
    from strandwise.evaluate.plots import plot_training_curves
    from strandwise.train.api import fit

    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    write_resolved_config(cfg)
    say(f"[fit] loading training loci from {cfg.data.loci}")
    train = make_train_sampler(cfg.data, verbose=not quiet)
    say(f"[fit] {train.peaks.n_peaks} training peaks, "
        f"{0 if train.negatives is None else len(train.negatives)} negatives, dropped {train.peaks.dropped}")
    valid = load_profile_dataset(cfg.data, "valid", verbose=not quiet)
    say(f"[fit] {valid.n_peaks} validation peaks + {len(valid) - valid.n_peaks} negatives "
        f"on {', '.join(cfg.data.validation_chroms)}")
    if len(valid) == 0:
        raise ValueError(f"no validation loci on {cfg.data.validation_chroms}: check data.validation_chroms")
    model = build_model(cfg)
    valid_data = (valid.X, valid.y, valid.labels, valid.X_ctl) if valid.X_ctl is not None else (valid.X, valid.y, valid.labels)
    result = fit(model, train, valid=valid_data, config=cfg.train, output_dir=cfg.out_dir,
                 resume=resume, quiet=quiet)
    if result.history:
        plot_training_curves(result.history, cfg.path(".training.png"))
    best = result.history[result.best_epoch] if 0 <= result.best_epoch < len(result.history) else None
    say(f"[fit] done in {time.perf_counter() - t0:.0f} s; outputs in {cfg.out_dir}")
    if best is not None:
        say(f"[fit] best epoch {best['epoch']}: validation profile Pearson "
            f"{best['val_profile_pearson']:.3f}, count Pearson {best['val_count_pearson']:.3f}")
    say(f"[fit] checkpoint: {cfg.path('.torch')}")
    return result
