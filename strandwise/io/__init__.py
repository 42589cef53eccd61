"""File formats and sequence encodings: FASTA, bigWig, BED, VCF, BAM, one-hot, tokenizer."""

from strandwise.io.atomic import atomic_path, atomic_torch_save, atomic_write_text
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
