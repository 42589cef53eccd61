"""Interpretation: output wrappers, attribution (ISM, DeepLIFT/SHAP), seqlets and motifs,
TF-MoDISco, marginalization, variant effects, pictures and HTML reports (spec §7).

Optional dependencies (tangermeme, modisco-lite, memelite — ``pip install 'strandwise[interpret]'``)
are imported only inside the functions that need them, so this package imports without them.
"""

from strandwise.interpret.attribution import (
    DEFAULT_ATTR_WINDOW,
    DEFAULT_N_SHUFFLES,
    attribute,
    attribution_window,
    conv_norm_deeplift_rule,
    deep_lift_shap,
    dinucleotide_shuffle,
    saturation_mutagenesis,
)
from strandwise.interpret.motifs_db import (
    jaspar_meme,
    jaspar_motifs,
    orient_like,
    tomtom_matches,
    trim_motif,
)
from strandwise.interpret.marginalize import insert_motif, marginalize, motif_consensus, select_backgrounds
from strandwise.interpret.report import HTMLReport, records_tsv, write_tsv
from strandwise.interpret.seqlets import (
    SEQLET_DEFAULTS,
    annotate_seqlets,
    call_seqlets,
    importance_scores,
    motif_aligned_cwm,
    motif_seqlet_counts,
    read_meme,
    run_modisco,
    seqlet_cwm,
    seqlets_to_genome,
    write_meme,
    write_motif_counts,
    write_seqlets_bed,
)
from strandwise.interpret.variants import (
    AlleleMismatchError,
    Variant,
    VariantEffects,
    build_variant_windows,
    parse_variants,
    score_variants,
    variant_type,
    write_variant_effects,
)
from strandwise.interpret.wrappers import (
    ControlWrapper,
    ExpectedCountsWrapper,
    LogCountWrapper,
    ProfileWrapper,
)

__all__ = [
    "AlleleMismatchError",
    "ControlWrapper",
    "DEFAULT_ATTR_WINDOW",
    "DEFAULT_N_SHUFFLES",
    "ExpectedCountsWrapper",
    "HTMLReport",
    "LogCountWrapper",
    "ProfileWrapper",
    "SEQLET_DEFAULTS",
    "Variant",
    "VariantEffects",
    "annotate_seqlets",
    "attribute",
    "attribution_window",
    "build_variant_windows",
    "call_seqlets",
    "conv_norm_deeplift_rule",
    "deep_lift_shap",
    "dinucleotide_shuffle",
    "importance_scores",
    "insert_motif",
    "jaspar_meme",
    "jaspar_motifs",
    "motif_aligned_cwm",
    "orient_like",
    "tomtom_matches",
    "trim_motif",
    "marginalize",
    "motif_consensus",
    "motif_seqlet_counts",
    "parse_variants",
    "read_meme",
    "records_tsv",
    "run_modisco",
    "saturation_mutagenesis",
    "score_variants",
    "select_backgrounds",
    "seqlet_cwm",
    "seqlets_to_genome",
    "variant_type",
    "write_meme",
    "write_motif_counts",
    "write_seqlets_bed",
    "write_tsv",
    "write_variant_effects",
]

# Caduceus embeddings and variant-effect embeddings
from strandwise.interpret.embeddings import EMBEDDING_OUTPUTS, embed_ids, embed_sequences
from strandwise.interpret.vep import (
    TSS_BUCKETS,
    evaluate_vep_svm,
    read_variant_file,
    variant_index,
    vep_embeddings,
    vep_window_indices,
)

__all__ += ["EMBEDDING_OUTPUTS", "embed_ids", "embed_sequences", "TSS_BUCKETS", "evaluate_vep_svm",
            "read_variant_file", "variant_index", "vep_embeddings", "vep_window_indices"]

# Token-id classifiers (CNN baseline, Caduceus) and motif enrichment
from strandwise.interpret.classifier import ClassifierWrapper, attribute_classifier
from strandwise.interpret.enrichment import motif_enrichment, motif_hit_attribution

__all__ += ["ClassifierWrapper", "attribute_classifier", "motif_enrichment", "motif_hit_attribution"]
