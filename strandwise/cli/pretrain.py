"""``strandwise pretrain CONFIG`` — masked-LM pretraining of a Caduceus on a FASTA (spec §6.1–§6.2)."""

from __future__ import annotations

import time


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="masked-LM pretraining of a Caduceus on a FASTA (optionally a BED of intervals)",
        description="Pretrain a Caduceus with masked-LM windows from a FASTA. Writes model/ "
        "(config.json + model.safetensors), history.tsv (validation perplexity and masked accuracy "
        "per step), NAME.config.json (resolved config) and last.ckpt (for --resume) into output_dir.",
    )
    p.add_argument("config", help="JSON or YAML config file")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/last.ckpt")
    p.add_argument("--devices", type=int, help="train on N devices with DDP; batch_size stays the global batch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _overrides(args) -> dict:
    if getattr(args, "devices", None) is None:
        return {}
    if args.devices < 1:
        raise ValueError("--devices must be >= 1")
    return {"train": {"devices": args.devices, "strategy": "ddp" if args.devices > 1 else "auto"}}


def build_datasets(cfg, verbose: bool = False):
    """``(train, valid, test)`` :class:`MLMWindowDataset` from the data section."""
    from strandwise.data.mlm import MLMWindowDataset, make_windows, split_windows
    from strandwise.io.intervals import read_bed
    from strandwise.io.records import SequenceStore

    d = cfg.data
    store = SequenceStore(d.fasta, in_memory=d.in_memory)
    bed = read_bed(d.bed, "BED file", keep_extra=True) if d.bed else None
    windows, labels = make_windows(store.chrom_sizes, d.window, bed, d.stride, d.chroms, source=d.bed or "the BED file")
    for c in list(d.valid_chroms) + list(d.test_chroms):
        if c not in store.chrom_sizes:
            store_chroms = ", ".join(list(store.chrom_sizes)[:8])
            raise ValueError(f"held-out chromosome {c!r} is not in the FASTA (it has {store_chroms}, ...)")
    splits = split_windows(windows, labels, d.valid_chroms, d.test_chroms)
    rcps = _is_rcps(cfg.model)
    rc_aug = d.rc_aug if d.rc_aug is not None else not rcps
    seed = cfg.train.seed
    train = MLMWindowDataset(store, splits["train"], seed, rc_aug=rc_aug, shuffle=True, mask_prob=d.mask_prob)
    valid_w = splits["valid"]
    if cfg.train.max_valid_windows is not None and len(valid_w) > cfg.train.max_valid_windows:
        import numpy as np

        keep = np.sort(np.random.RandomState(seed).permutation(len(valid_w))[: cfg.train.max_valid_windows])
        valid_w = valid_w.subset(keep)
    valid = MLMWindowDataset(store, valid_w, seed + 1, rc_aug=False, shuffle=False, fixed_masks=True, mask_prob=d.mask_prob)
    test = MLMWindowDataset(store, splits["test"], seed + 2, rc_aug=False, shuffle=False, fixed_masks=True, mask_prob=d.mask_prob)
    if verbose:
        skipped = "; ".join(f"{v} {k}" for k, v in windows.skipped.items() if v) or "nothing skipped"
        print(f"[pretrain] {store}; windows of {d.window} bp: train {len(train)}, valid {len(valid)}, "
              f"test {len(test)}; {skipped}; RC augmentation {'on' if rc_aug else 'off'}")
    return train, valid, test


def _is_rcps(mcfg) -> bool:
    if mcfg.pretrained:
        import json
        import os

        with open(os.path.join(mcfg.pretrained, "config.json"), encoding="utf-8") as fh:
            return bool(json.load(fh).get("rcps", False))
    return mcfg.variant == "ps"


def run(args) -> int:
    from strandwise.cli.caduceus_config import PretrainConfig, load_command_config

    cfg = load_command_config(PretrainConfig, args.config, _overrides(args))
    run_pretrain(cfg, resume=args.resume, quiet=args.quiet)
    return 0


def run_pretrain(cfg, resume: bool = False, quiet: bool = False):
    from strandwise.cli.caduceus_config import write_resolved
    from strandwise.train.caduceus_module import build_mlm_model, pretrain

    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    write_resolved(cfg)
    train, valid, _ = build_datasets(cfg, verbose=not quiet)
    model = build_mlm_model(cfg.model, cfg.train.seed)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    say(f"[pretrain] {'PS' if model.config.rcps else 'Ph'} Caduceus d_model {model.config.d_model}, "
        f"{model.config.n_layer} layers, {n_params:,} parameters; {cfg.train.max_steps} steps of "
        f"{cfg.train.batch_size * cfg.train.accumulate_grad_batches} windows")
    result = pretrain(model, train, valid if len(valid) else None, cfg.train, output_dir=cfg.out_dir,
                      resume=resume, quiet=quiet)
    if result.history:
        h = result.history[-1]
        say(f"[pretrain] step {h['step']}: validation loss {h['val_loss']:.4f} nats/token, perplexity "
            f"{h['val_perplexity']:.3f}, masked accuracy {h['val_accuracy']:.3f}")
    say(f"[pretrain] done in {time.perf_counter() - t0:.0f} s; model in {cfg.out_dir}/model")
    return result
