"""``strandwise predict`` — predicted signal as bigWig and predicted log counts as TSV.

Two modes: ``--loci BED`` predicts one output window centred on each interval (summit-centred
for narrowPeak files when the config has ``summits: true``); ``--chroms`` tiles whole chromosomes
with adjacent output windows (inputs that run past a chromosome end are padded with N, i.e. zero
columns). bigWig values are expected counts (profile probabilities × predicted total) per
channel; where output windows overlap, the values are averaged.
"""

from __future__ import annotations


import numpy as np
import torch
from tqdm.auto import tqdm

from strandwise.cli.profile_config import load_fit_config


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict bigWig tracks and log counts for a BED of loci or whole chromosomes",
        description=__doc__,
    )
    p.add_argument("config", help="the config used for fit (genome, signals, windows)")
    p.add_argument("--model", help="checkpoint (default: output_dir/NAME.torch)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--loci", help="BED/narrowPeak of loci to predict")
    where.add_argument("--chroms", nargs="+", help="whole chromosomes to predict")
    p.add_argument("--output", help="output prefix (default: output_dir/NAME.predictions)")
    p.add_argument("--rc-average", action="store_true", default=None,
                   help="average forward and reverse-complement predictions (per-group strand swap)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_fit_config(args.config)
    if args.rc_average is not None:
        cfg.evaluate.reverse_complement_average = True
    run_predict(cfg, model_path=args.model, loci=args.loci, chroms=args.chroms,
                output=args.output, quiet=args.quiet)
    return 0


def _windows_for_chroms(chroms, sizes, out_window):
    rows = []
    for c in chroms:
        for start in range(0, sizes[c], out_window):
            rows.append((c, start + out_window // 2))
    return rows


def _fetch_padded(genome, chrom, start, end, size):
    s, e = max(0, start), min(size, end)
    seq = genome.fetch(chrom, s, e) if e > s else ""
    return "N" * (s - start) + seq + "N" * (end - e)


def run_predict(cfg, model_path=None, loci=None, chroms=None, output=None, quiet=False):
    """Predict and write ``PREFIX.TRACK.bw`` per profile channel and ``PREFIX.counts.tsv``."""
    from strandwise.cli.evaluate import _track_names, pick_device
    from strandwise.evaluate.predict import expected_counts, predict
    from strandwise.io.atomic import atomic_write_text
    from strandwise.io.bigwig import write_bigwig
    from strandwise.io.fasta import open_genome, read_chrom_sizes
    from strandwise.io.intervals import read_peaks
    from strandwise.io.sequence import one_hot_encode
    from strandwise.models.cherimoya import Cherimoya

    say = (lambda *a: None) if quiet else print
    device = pick_device(cfg.evaluate.device)
    model = Cherimoya.load(model_path or cfg.path(".torch"), device=device)
    if model.n_control_tracks:
        raise ValueError("predict does not yet read control tracks; this model needs controls")
    genome = open_genome(cfg.data.sequences)
    sizes = read_chrom_sizes(genome)
    in_w, out_w = cfg.data.in_window, cfg.data.out_window
    if in_w - 2 * model.trimming != out_w:
        raise ValueError(f"the model maps {in_w} bp to {in_w - 2 * model.trimming} outputs, not {out_w}")
    if chroms:
        genome.check_chroms(chroms, "--chroms")
        centers = _windows_for_chroms(chroms, sizes, out_w)
    else:
        iv = read_peaks(loci)
        genome.check_chroms(sorted(set(iv.chrom.tolist())), f"loci file {loci}")
        mids = iv.centers(summits=cfg.data.summits)
        centers = list(zip(iv.chrom.tolist(), mids.tolist()))
    if not centers:
        raise ValueError("nothing to predict: no loci")
    prefix = output or cfg.path(".predictions")
    names = _track_names(cfg)
    if len(names) != model.n_outputs:
        names = [f"track{i}" for i in range(model.n_outputs)]
    sums = {n: {} for n in names}
    cover = {}
    rows = []
    batch = cfg.evaluate.batch_size
    for b in tqdm(range(0, len(centers), batch), desc="predict", unit="batch", disable=quiet):
        chunk = centers[b : b + batch]
        X = torch.stack([
            one_hot_encode(_fetch_padded(genome, c, m - in_w // 2, m - in_w // 2 + in_w, sizes[c]))
            for c, m in chunk
        ])
        logits, logcounts = predict(model, X, batch_size=batch, device=device,
                                    reverse_complement_average=cfg.evaluate.reverse_complement_average)
        exp = expected_counts(logits, logcounts, model.signal_groups).numpy()
        for k, (c, m) in enumerate(chunk):
            s = m - out_w // 2
            lo, hi = max(0, s), min(sizes[c], s + out_w)
            if hi <= lo:
                continue
            if c not in cover:
                cover[c] = np.zeros(sizes[c], np.float32)
                for n in names:
                    sums[n][c] = np.zeros(sizes[c], np.float64)
            cover[c][lo:hi] += 1
            for o, n in enumerate(names):
                sums[n][c][lo:hi] += exp[k, o, lo - s : hi - s]
            rows.append((c, s, s + out_w, *logcounts[k].tolist()))
    genome.close()
    written = []
    for n in names:
        values = {c: np.divide(v, np.maximum(cover[c], 1)) for c, v in sums[n].items()}
        path = f"{prefix}.{n}.bw"
        write_bigwig(path, sizes, values, skip_zeros=True)
        written.append(path)
    header = ["chrom", "start", "end"] + [f"logcount_group{g}" for g in range(model.n_groups)]
    lines = ["\t".join(header)] + ["\t".join([r[0], str(r[1]), str(r[2])] + [f"{v:.6g}" for v in r[3:]]) for r in rows]
    atomic_write_text(f"{prefix}.counts.tsv", "\n".join(lines) + "\n")
    written.append(f"{prefix}.counts.tsv")
    for w in written:
        say(f"[predict] wrote {w}")
    return written
