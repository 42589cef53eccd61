"""Rebuild every derived file of the yeast ATAC example from the raw inputs.

    python examples/yeast_atac/build.py [--genome-dir DIR] [--peaks auto|macs3|pileup]

Inputs: the 17 Ensembl R64-1-1 chromosome FASTA files (default: ../shared/data/yeast_genome_R64-1-1
next to the repository) and the fragments file in this folder. Outputs (in this folder):
sacCer3.fa.gz (+ .fai, .gzi), yeast_atac.insertions.bw, yeast_atac.macs3_peaks.narrowPeak (or
yeast_atac.pileup_peaks.narrowPeak with the built-in caller) and yeast_atac.negatives.bed.
"""

import argparse
import os

from strandwise.data.negatives import write_negatives
from strandwise.io.fasta import build_genome_fasta
from strandwise.io.reads import call_peaks, reads_to_bigwig

HERE = os.path.dirname(os.path.abspath(__file__))
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV",
         "XV", "XVI"]
# Ensembl → UCSC names, to match the fragments file.
RENAME = {**{r: "chr" + r for r in ROMAN}, "Mito": "chrM"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genome-dir", default=os.path.join(HERE, "..", "..", "..", "shared", "data",
                                                          "yeast_genome_R64-1-1"))
    ap.add_argument("--peaks", default="auto", choices=["auto", "macs3", "pileup"])
    args = ap.parse_args()
    p = lambda name: os.path.join(HERE, name)  # noqa: E731
    fa = [os.path.join(args.genome_dir, f"Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.{c}.fa.gz")
          for c in ROMAN + ["Mito"]]
    build_genome_fasta(fa, p("sacCer3.fa.gz"), rename=RENAME)
    frags = p("yeast_500k_SRR1822137.bedpe.gz")
    s = reads_to_bigwig(frags, p("yeast_atac.insertions.bw"), p("sacCer3.fa.gz"), shift="atac",
                        mask=p("exclusion.bed"))
    print(f"insertions: {s.n_events} from {s.n_records} fragments, {s.n_masked:.0f} masked")
    out, used = call_peaks(frags, p("peaks.tmp.narrowPeak"), p("sacCer3.fa.gz"), method=args.peaks,
                           genome_size=1.2e7, mask=p("exclusion.bed"), mask_chroms=["chrM"])
    peaks = p(f"yeast_atac.{used}_peaks.narrowPeak")
    os.replace(out, peaks)
    print(f"peaks ({used}): {peaks}")
    st = write_negatives(p("yeast_atac.negatives.bed"), peaks, p("sacCer3.fa.gz"),
                         exclusion=p("exclusion.bed"), summits=True, random_state=0)
    print(f"negatives: {st['n_negatives']}")


if __name__ == "__main__":
    main()
