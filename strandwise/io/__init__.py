"""File formats and sequence encodings: FASTA, bigWig, BED, VCF, BAM, one-hot, tokenizer."""

from strandwise.io.atomic import atomic_path, atomic_torch_save, atomic_write_text
from strandwise.io.bigwig import BigWig, SignalTracks, normalize_signal_groups, write_bigwig
from strandwise.io.fasta import Genome, build_genome_fasta, read_chrom_sizes, suggest_chrom_mapping
from strandwise.io.intervals import (
    ExclusionList,
    Intervals,
    read_bed,
    read_exclusion_lists,
    read_peaks,
    write_bed,
    write_narrowpeak,
)
from strandwise.io.reads import (
    ATAC_SHIFT,
    call_peaks,
    call_peaks_macs3,
    call_peaks_pileup,
    count_insertions,
    fragment_coverage,
    mask_tracks,
    reads_to_bigwig,
)
from strandwise.io.sequence import (
    ALPHABET,
    one_hot_decode,
    one_hot_encode,
    reverse_complement_one_hot,
    string_reverse_complement,
)
from strandwise.io.tokenizer import (
    CaduceusTokenizer,
    CharacterTokenizer,
    complement_map_tensor,
    ids_to_one_hot,
    n_to_pad,
    reverse_complement_ids,
)

__all__ = [
    "ATAC_SHIFT",
    "BigWig",
    "ExclusionList",
    "Genome",
    "Intervals",
    "SignalTracks",
    "build_genome_fasta",
    "call_peaks",
    "call_peaks_macs3",
    "call_peaks_pileup",
    "count_insertions",
    "fragment_coverage",
    "mask_tracks",
    "normalize_signal_groups",
    "read_bed",
    "read_chrom_sizes",
    "read_exclusion_lists",
    "read_peaks",
    "reads_to_bigwig",
    "suggest_chrom_mapping",
    "write_bed",
    "write_bigwig",
    "write_narrowpeak",
    "ALPHABET",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_text",
    "one_hot_decode",
    "one_hot_encode",
    "reverse_complement_one_hot",
    "string_reverse_complement",
    "CaduceusTokenizer",
    "CharacterTokenizer",
    "complement_map_tensor",
    "ids_to_one_hot",
    "n_to_pad",
    "reverse_complement_ids",
]

from strandwise.io.records import SequenceStore, read_fasta_records  # Caduceus data pipelines

__all__ += ["SequenceStore", "read_fasta_records"]
