"""``strandwise evaluate CONFIG`` — spec §6 metrics on held-out chromosomes, plus pictures."""

from __future__ import annotations

import math

import torch

from strandwise.cli.profile_config import load_fit_config


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of a trained model on the test (or another) split: TSV + PNGs",
        description="Evaluate a trained Cherimoya on one split of the config's chromosomes. "
        "Writes NAME.SPLIT.performance.tsv (one row per signal group, every spec §6 metric), "
        "NAME.SPLIT.profiles.png and NAME.SPLIT.counts.png.",
    )
    p.add_argument("config", help="the config used for fit")
    p.add_argument("--model", help="checkpoint (default: output_dir/NAME.torch)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--rc-average", action="store_true", default=None,
                   help="average forward and reverse-complement predictions")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_fit_config(args.config)
    if args.rc_average is not None:
        cfg.evaluate.reverse_complement_average = True
    run_evaluate(cfg, model_path=args.model, split=args.split, quiet=args.quiet)
    return 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def format_table(rows, columns) -> str:
    out = ["\t".join(["group"] + list(columns))]
    for r in rows:
        out.append("\t".join([str(r["group"])] + [_fmt(r[c]) for c in columns]))
    return "\n".join(out) + "\n"


def _fmt(v) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}"


def run_evaluate(cfg, model_path=None, split="test", quiet=False):
    """Predict the split's loci, write the metrics TSV and plots; returns the table rows."""
    from strandwise.data.loci import load_profile_dataset
    from strandwise.evaluate.metrics import GROUP_METRIC_COLUMNS, group_performance_table
    from strandwise.evaluate.plots import plot_count_scatter, plot_profiles
    from strandwise.evaluate.predict import expected_counts, predict
    from strandwise.io.atomic import atomic_write_text
    from strandwise.models.cherimoya import Cherimoya
    from strandwise.train.losses import count_targets

    say = (lambda *a: None) if quiet else print
    device = pick_device(cfg.evaluate.device)
    model = Cherimoya.load(model_path or cfg.path(".torch"), device=device)
    if list(model.signal_groups) != list(cfg.data.signal_spec[1]):
        raise ValueError(
            f"the model's signal_groups {model.signal_groups} do not match the config's signals "
            f"{cfg.data.signal_spec[1]}"
        )
    loci = load_profile_dataset(cfg.data, split, verbose=not quiet)
    if loci.n_peaks == 0:
        raise ValueError(f"no peaks on the {split} chromosomes {cfg.data.chroms(split)}")
    say(f"[evaluate] {loci.n_peaks} peaks + {len(loci) - loci.n_peaks} negatives on {split}")
    logits, logcounts = predict(
        model, loci.X, loci.X_ctl, batch_size=cfg.evaluate.batch_size, device=device,
        reverse_complement_average=cfg.evaluate.reverse_complement_average,
        control_groups=loci.control_groups, progress=not quiet,
    )
    labels = loci.labels.long()
    has_neg = bool((labels == 0).any())
    rows = group_performance_table(logits, loci.y, logcounts, model.signal_groups, labels if has_neg else None)
    tsv = cfg.path(f".{split}.performance.tsv")
    atomic_write_text(tsv, format_table(rows, GROUP_METRIC_COLUMNS))
    peaks = labels == 1
    obs = count_targets(loci.y[peaks], model.signal_groups)
    plot_count_scatter(obs[:, 0], logcounts[peaks][:, 0], cfg.path(f".{split}.counts.png"), title=f"{cfg.name} {split}")
    k = min(cfg.evaluate.n_plot_loci, int(peaks.sum()))
    top = torch.argsort(obs[:, 0], descending=True)[:k]
    idx = torch.nonzero(peaks).flatten()[top]
    exp = expected_counts(logits[idx], logcounts[idx], model.signal_groups)
    titles = [f"{loci.chrom[i]}:{loci.center[i] - cfg.data.out_window // 2}-"
              f"{loci.center[i] + cfg.data.out_window // 2}" for i in idx.tolist()]
    names = [str(t) for t in _track_names(cfg)]
    plot_profiles(loci.y[idx], exp, titles, cfg.path(f".{split}.profiles.png"), names)
    for r in rows:
        say(f"[evaluate] group {r['group']}: profile Pearson {r['profile_pearson']:.3f}, "
            f"JSD {r['profile_jsd']:.3f}, count Pearson {r['count_pearson']:.3f}"
            + (f", AUROC {r['auroc']:.3f}" if not math.isnan(r["auroc"]) else ""))
    say(f"[evaluate] wrote {tsv}")
    return rows


def _track_names(cfg):
    import os

    tracks, _ = cfg.data.signal_spec
    names = []
    for t in tracks:
        base = os.path.basename(t) if isinstance(t, str) else "track"
        for ext in (".bigWig", ".bigwig", ".bw"):
            if base.endswith(ext):
                base = base[: -len(ext)]
        names.append(base)
    return names
