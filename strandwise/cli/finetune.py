"""``strandwise finetune CONFIG`` — sequence classification with Caduceus or the CNN baseline."""

from __future__ import annotations

import time

import numpy as np


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a Caduceus (or the CNN baseline) on labelled sequences",
        description="Fine-tune on labelled sequences (CSV/TSV, FASTA + labels, Genomic Benchmarks "
        "folders or coordinate files). Writes classifier/, metrics.json (accuracy, MCC, F1, AUROC on "
        "validation and test for the best epoch), history.tsv, NAME.config.json and last.ckpt.",
    )
    p.add_argument("config", help="JSON or YAML config file")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/last.ckpt")
    p.add_argument("--devices", type=int, help="train on N devices with DDP")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _read(d, which: str, class_names=None):
    from strandwise.data.labelled import read_labelled

    if d.root:
        return read_labelled(d.root, which, d.format, genome=d.genome, class_names=class_names)
    path = getattr(d, which)
    if path is None:
        return None
    return read_labelled(path, None, d.format, genome=d.genome, labels_file=getattr(d, f"{which}_labels"),
                         class_names=class_names)


def _cap(data, n, seed):
    if n is None or len(data) <= n:
        return data
    return data.subset(np.sort(np.random.RandomState(seed).permutation(len(data))[:n]))


def load_splits(d):
    """``(train, valid, test)`` :class:`LabelledSequences` per the data section (test may be None)."""
    import os

    from strandwise.data.labelled import kfold_indices, train_valid_split

    train = _read(d, "train")
    names = train.class_names
    test = None
    if d.kfold is not None:
        tr_idx, te_idx = kfold_indices(train.labels, d.kfold, d.fold_seed)[d.fold]
        train, test = train.subset(tr_idx), train.subset(te_idx)
    elif d.root and os.path.isdir(os.path.join(d.root, "test")):
        test = _read(d, "test", names)
    elif d.test:
        test = _read(d, "test", names)
    valid = None
    if d.root and os.path.isdir(os.path.join(d.root, "valid")):
        valid = _read(d, "valid", names)
    elif d.valid and not d.root:
        valid = _read(d, "valid", names)
    if valid is None:
        tr_idx, va_idx = train_valid_split(len(train), d.valid_fraction, d.fold_seed)
        train, valid = train.subset(tr_idx), train.subset(va_idx)
    train = _cap(train, d.max_train, d.fold_seed)
    valid = _cap(valid, d.max_eval, d.fold_seed)
    test = _cap(test, d.max_eval, d.fold_seed) if test is not None else None
    return train, valid, test


def run(args) -> int:
    from strandwise.cli.caduceus_config import FinetuneConfig, load_command_config
    from strandwise.cli.pretrain import _overrides

    cfg = load_command_config(FinetuneConfig, args.config, _overrides(args))
    run_finetune(cfg, resume=args.resume, quiet=args.quiet)
    return 0


def run_finetune(cfg, resume: bool = False, quiet: bool = False):
    import dataclasses

    from strandwise.cli.caduceus_config import write_resolved
    from strandwise.cli.pretrain import _is_rcps
    from strandwise.data.labelled import LabelledDataset
    from strandwise.train.caduceus_module import build_classifier, finetune

    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    write_resolved(cfg)
    train, valid, test = load_splits(cfg.data)
    L = cfg.data.max_length or max(len(s) for s in train.sequences)
    m = cfg.model
    rcps = m.kind == "caduceus" and _is_rcps(m)
    _, _, rc_aug = m.strand_protocol(rcps) if m.kind == "caduceus" else (False, False, False)
    seed = cfg.train.seed
    train_ds = LabelledDataset(train, L, rc_aug=rc_aug, shuffle=True, seed=seed)
    valid_ds = LabelledDataset(valid, L)
    tests = {"test": LabelledDataset(test, L)} if test is not None else {}
    say(f"[finetune] {len(train)} train / {len(valid)} valid / {0 if test is None else len(test)} test "
        f"sequences, {train.num_classes} classes {train.class_names}, max_length {L}")
    model = build_classifier(m, train.num_classes, L, seed)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    desc = "CNN baseline" if m.kind == "cnn" else (
        f"{'PS' if rcps else 'Ph'} Caduceus ({'pretrained ' + m.pretrained if m.pretrained else 'random init'})")
    say(f"[finetune] {desc}, {n_params:,} parameters")
    meta = {"model": dataclasses.asdict(m), "num_classes": train.num_classes, "class_names": train.class_names,
            "max_length": L}
    result = finetune(model, train_ds, valid_ds, tests, cfg.train, output_dir=cfg.out_dir, resume=resume,
                      quiet=quiet, meta=meta)
    for split in ("valid", "test"):
        if split in result.metrics:
            r = result.metrics[split]
            say(f"[finetune] {split}: accuracy {r['accuracy']:.4f}  MCC {r['mcc']:.4f}  F1 {r['f1']:.4f}  "
                f"AUROC {r['auroc']:.4f}  (n={r['n']})")
    say(f"[finetune] best epoch {result.best_epoch}; done in {time.perf_counter() - t0:.0f} s; outputs in {cfg.out_dir}")
    return result
