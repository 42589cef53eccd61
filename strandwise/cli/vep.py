"""``strandwise vep CONFIG`` — Caduceus variant-effect embeddings (spec §7), optionally the SVM protocol."""

from __future__ import annotations

import json
import time


def register(sub) -> None:
    p = sub.add_parser(
        "vep",
        help="variant-effect embeddings (concat_avg_ws, rc_concat_avg_ws per split) from a VCF/TSV + FASTA",
        description="Compute VEP embeddings: ref/alt windows and their reverse complements, centred "
        "window averaging. Writes {split}_embeds_combined.safetensors (or .npz/.pt), "
        "{split}_variants.tsv, skipped.tsv, vep_summary.json and NAME.config.json into output_dir; with "
        "evaluate: true also svm.json.",
    )
    p.add_argument("config", help="JSON or YAML config file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from strandwise.cli.caduceus_config import VEPConfig, load_command_config

    cfg = load_command_config(VEPConfig, args.config)
    run_vep(cfg, quiet=args.quiet)
    return 0


def _write_split(path, arrays, fmt):
    import numpy as np

    from strandwise.io.atomic import atomic_path, atomic_torch_save

    if fmt == "safetensors":
        from strandwise.interpret.embeddings import write_safetensors_streamed

        write_safetensors_streamed(path, {k: np.ascontiguousarray(v) for k, v in arrays.items()})
    elif fmt == "npz":
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    else:
        import torch

        atomic_torch_save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, path)


def run_vep(cfg, quiet: bool = False) -> dict:
    import os

    from strandwise.cli.caduceus_config import write_resolved
    from strandwise.cli.embed import load_backbone
    from strandwise.interpret.vep import evaluate_vep_svm, read_variant_file, vep_embeddings
    from strandwise.io.atomic import atomic_write_text
    from strandwise.io.records import SequenceStore

    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    write_resolved(cfg)
    records = read_variant_file(cfg.variants)
    store = SequenceStore(cfg.fasta)
    backbone = load_backbone(cfg.model, both_strands=True, seed=cfg.seed)
    device = None if cfg.device == "auto" else cfg.device
    res = vep_embeddings(backbone, store.fetch_clipped, records, cfg.length, cfg.window, cfg.batch_size,
                         cfg.on_ref_mismatch, device, progress=not quiet)
    ext = {"safetensors": ".safetensors", "npz": ".npz", "pt": ".pt"}[cfg.format]
    for split, arrays in res.splits.items():
        _write_split(os.path.join(cfg.out_dir, f"{split}_embeds_combined{ext}"), arrays, cfg.format)
        lines = ["id\tchrom\tpos\tref\talt\tlabel\ttissue\tdistance_to_nearest_tss"]
        lines += [f"{r.id}\t{r.chrom}\t{r.pos}\t{r.ref}\t{r.alt}\t{r.label}\t{r.tissue}\t{r.distance_to_nearest_tss}"
                  for r in res.kept[split]]
        atomic_write_text(os.path.join(cfg.out_dir, f"{split}_variants.tsv"), "\n".join(lines) + "\n")
    skipped = ["line\tchrom\tpos\tref\talt\treason"] + [
        f"{r.line}\t{r.chrom}\t{r.pos}\t{r.ref}\t{r.alt}\t{why}" for r, why in res.skipped]
    atomic_write_text(os.path.join(cfg.out_dir, "skipped.tsv"), "\n".join(skipped) + "\n")
    n_alleles = sum(len(v) for v in res.kept.values()) + len(res.skipped)  # multi-allelic lines: one per ALT
    summary = {"n_variants": len(records), "n_alleles": n_alleles, "n_kept": {k: len(v) for k, v in res.kept.items()},
               "n_skipped": len(res.skipped), "skipped_by_reason": res.skip_counts,
               "d_model": backbone.config.d_model, "length": cfg.length, "window": cfg.window}
    if cfg.evaluate:
        if "train" not in res.splits or "test" not in res.splits:
            raise ValueError("evaluate: true needs variants with split 'train' and split 'test'")
        variant = "ps" if backbone.config.rcps else "ph"
        svm = evaluate_vep_svm(res.splits["train"], res.splits["test"], variant, cfg.svm_c, cfg.svm_seeds,
                               cfg.svm_train_size)
        atomic_write_text(os.path.join(cfg.out_dir, "svm.json"), json.dumps(svm, indent=2) + "\n")
        summary["svm"] = svm["summary"]
    atomic_write_text(os.path.join(cfg.out_dir, "vep_summary.json"), json.dumps(summary, indent=2) + "\n")
    say(f"[vep] {sum(summary['n_kept'].values())} variants embedded "
        f"({', '.join(f'{k}: {v}' for k, v in summary['n_kept'].items())}); skipped {len(res.skipped)}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in res.skip_counts.items())})" if res.skipped else "")
        + f"; outputs in {cfg.out_dir} ({time.perf_counter() - t0:.1f} s)")
    return summary
