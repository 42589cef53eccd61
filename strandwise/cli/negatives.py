"""``strandwise negatives``: GC-matched background loci for a peak file (spec §5.6, §7.3)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from strandwise.data.negatives import gc_matched_negatives  # noqa: F401  (fail early if broken)

    p = subparsers.add_parser(
        "negatives",
        help="GC-matched negative loci for a peak file",
        description="Tile the peaks' chromosomes into in_window-wide windows and pick tiles whose GC "
                    "distribution matches the peaks' (seeded: the same --random-state gives the "
                    "same BED).",
    )
    p.add_argument("-i", "--peaks", required=True, action="append",
                   help="peak BED/narrowPeak (repeatable; files are interleaved)")
    p.add_argument("-f", "--fasta", required=True, help="genome FASTA (plain or bgzip + .fai)")
    p.add_argument("-b", "--bigwig", action="append", default=None,
                   help="signal bigWig for the low-signal filter (repeatable; summed)")
    p.add_argument("-o", "--output", required=True, help="output 3-column BED")
    p.add_argument("-l", "--bin-width", type=float, default=0.02, help="GC bin width (0.02)")
    p.add_argument("-n", "--max-n-perc", type=float, default=0.1,
                   help="largest fraction of N in a window (0.1)")
    p.add_argument("-a", "--beta", type=float, default=0.5,
                   help="low-signal filter: keep tiles below beta x 1st percentile of peak signal")
    p.add_argument("-w", "--in-window", type=int, default=2114, help="tile width (2114)")
    p.add_argument("-x", "--out-window", type=int, default=1000,
                   help="width for the signal filter (1000)")
    p.add_argument("-s", "--random-state", type=int, default=0, help="shuffle seed (0)")
    p.add_argument("-e", "--exclusion", action="append", default=None,
                   help="exclusion-list BED (repeatable)")
    p.add_argument("--summits", action="store_true",
                   help="centre peaks on the narrowPeak summit (column 10)")
    p.add_argument("-v", "--verbose", action="store_true", help="progress bar and GC histogram")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strandwise.data.negatives import write_negatives

    stats = write_negatives(
        args.output, args.peaks, args.fasta, in_window=args.in_window, out_window=args.out_window,
        bin_width=args.bin_width, max_n_perc=args.max_n_perc, signals=args.bigwig, beta=args.beta,
        random_state=args.random_state, summits=args.summits, exclusion=args.exclusion,
        verbose=args.verbose and not args.quiet)
    if not args.quiet:
        print(f"wrote {stats['n_negatives']} negatives for {stats['n_peaks_used']} peaks "
              f"({stats['n_candidates']} candidate tiles) to {args.output}", file=sys.stderr)
        if args.verbose:
            for b in range(len(stats["peak_hist"])):
                if stats["peak_hist"][b] or stats["negative_hist"][b]:
                    print(f"  GC bin {b:2d}: peaks {stats['peak_hist'][b]:6d}  negatives "
                          f"{stats['negative_hist'][b]:6d}", file=sys.stderr)
    return 0
