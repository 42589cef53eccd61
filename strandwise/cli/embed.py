"""``strandwise embed CONFIG`` — Caduceus embeddings of FASTA records, BED intervals or strings."""

from __future__ import annotations

import time


def register(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="Caduceus embeddings ([N,L,d], [N,L,d,2], pooled [N,d]/[N,2d], projected [N,512]) to safetensors/NPZ",
        description="Embed FASTA records, BED intervals (with a genome) or raw strings with a Caduceus "
        "checkpoint. Writes NAME.safetensors (or .npz) with the ids alongside, NAME.ids.txt and "
        "NAME.config.json into output_dir; batches are streamed to disk.",
    )
    p.add_argument("config", help="JSON or YAML config file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_backbone(mcfg, both_strands: bool = True, seed: int = 0):
    """A :class:`DNAEmbeddingModelCaduceus` (both strands, aligned) from ``model.pretrained`` or,
    without it, a seeded random model of the configured size."""
    import torch

    from strandwise.models.caduceus import DNAEmbeddingModelCaduceus
    from strandwise.train.caduceus_module import _load_backbone_state, _pretrained_config

    if mcfg.kind != "caduceus":
        raise ValueError("embeddings need a Caduceus model (model.kind 'caduceus')")
    torch.manual_seed(seed)
    ccfg = _pretrained_config(mcfg) if mcfg.pretrained else mcfg.caduceus_config()
    model = DNAEmbeddingModelCaduceus(ccfg, conjoin_train=both_strands, aligned=True)
    if mcfg.pretrained:
        _load_backbone_state(model, mcfg.pretrained)
    return model.eval()


def read_inputs(cfg):
    """``(sequences, ids)`` from the config's fasta / bed + genome / sequences."""
    if cfg.sequences is not None:
        seqs = [str(s) for s in cfg.sequences]
        for i, s in enumerate(seqs):
            bad = sorted(set(s.upper()) - set("ACGTN"))
            if bad:  # typed strings: a typo must not become N silently (genome files keep the N rule)
                raise ValueError(f"sequences[{i}]: characters {''.join(bad)!r} are not A/C/G/T/N")
        return seqs, [f"seq{i}" for i in range(len(seqs))]
    if cfg.fasta is not None:
        from strandwise.io.records import read_fasta_records

        recs = list(read_fasta_records(cfg.fasta))
        return [s for _, s in recs], [n for n, _ in recs]
    from strandwise.io.intervals import read_bed
    from strandwise.io.records import SequenceStore

    iv = read_bed(cfg.bed, "BED file")
    store = SequenceStore(cfg.genome)
    seqs = [store.fetch(c, int(s), int(e)) for c, s, e in zip(iv.chrom, iv.start, iv.end)]
    return seqs, [f"{c}:{s}-{e}" for c, s, e in zip(iv.chrom, iv.start, iv.end)]


def run(args) -> int:
    from strandwise.cli.caduceus_config import EmbedConfig, load_command_config

    cfg = load_command_config(EmbedConfig, args.config)
    run_embed(cfg, quiet=args.quiet)
    return 0


def run_embed(cfg, quiet: bool = False) -> dict:
    import os

    import torch

    from strandwise.cli.caduceus_config import write_resolved
    from strandwise.interpret.embeddings import embed_sequences
    from strandwise.models.caduceus import CaduceusProjector

    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    write_resolved(cfg)
    seqs, ids = read_inputs(cfg)
    if not seqs:
        raise ValueError("no input sequences")
    backbone = load_backbone(cfg.model, both_strands=not (cfg.output == "tokens" and not _rcps(cfg.model)), seed=cfg.seed)
    projector = None
    if cfg.output == "projected":
        d = backbone.config.d_model
        torch.manual_seed(cfg.seed)
        projector = CaduceusProjector(input_dim=2 * d)
        if cfg.projector_weights:
            projector.load_state_dict(torch.load(cfg.projector_weights, map_location="cpu", weights_only=True))
        elif not quiet:
            print("[embed] note: no projector_weights given; the projector is randomly initialised (seeded)")
    ext = ".safetensors" if cfg.format == "safetensors" else ".npz"
    device = None if cfg.device == "auto" else cfg.device
    out = embed_sequences(backbone, seqs, ids, cfg.path(ext), cfg.output, cfg.format, cfg.batch_size,
                          cfg.max_length, projector, device, progress=not quiet)
    say(f"[embed] {out['n']} sequences -> {cfg.output} {list(out['shape'])} in {os.path.basename(out['path'])} "
        f"({time.perf_counter() - t0:.1f} s)")
    return out


def _rcps(mcfg) -> bool:
    from strandwise.cli.pretrain import _is_rcps

    return _is_rcps(mcfg)
