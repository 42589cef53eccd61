"""strandwise.data"""
from strandwise.data.config import ProfileDataConfig, check_signal_groups
from strandwise.data.loci import (
    ProfileLoci,
    count_filter_mask,
    extract_loci,
    load_profile_dataset,
    load_training_loci,
    locus_windows,
    make_train_sampler,
    outlier_filter_mask,
)
from strandwise.data.negatives import gc_matched_negatives, write_negatives
from strandwise.data.sampler import EpochBatchSampler, PeakNegativeSampler, ddp_batch_slice, epoch_seed
from strandwise.data.splits import (
    HG38_TEST_CHROMS,
    HG38_TRAINING_CHROMS,
    HG38_VALIDATION_CHROMS,
    canonical_split,
    check_splits_disjoint,
)

__all__ = [
    "EpochBatchSampler",
    "HG38_TEST_CHROMS",
    "HG38_TRAINING_CHROMS",
    "HG38_VALIDATION_CHROMS",
    "PeakNegativeSampler",
    "ProfileDataConfig",
    "ProfileLoci",
    "canonical_split",
    "check_signal_groups",
    "check_splits_disjoint",
    "count_filter_mask",
    "ddp_batch_slice",
    "epoch_seed",
    "extract_loci",
    "gc_matched_negatives",
    "load_profile_dataset",
    "load_training_loci",
    "locus_windows",
    "make_train_sampler",
    "outlier_filter_mask",
    "write_negatives",
]

# Caduceus data: masked-LM windows and labelled sequences
from strandwise.data.labelled import (
    LabelledDataset,
    LabelledSequences,
    kfold_indices,
    read_fasta_labelled,
    read_gb_coordinates,
    read_gb_folder,
    read_gb_intervals,
    read_labelled,
    read_labelled_table,
    train_valid_split,
)
from strandwise.data.mlm import MLMWindowDataset, MLMWindows, make_windows, mlm_mask, split_windows

__all__ += [
    "LabelledDataset", "LabelledSequences", "kfold_indices", "read_fasta_labelled", "read_gb_coordinates",
    "read_gb_folder", "read_gb_intervals", "read_labelled", "read_labelled_table", "train_valid_split",
    "MLMWindowDataset", "MLMWindows", "make_windows", "mlm_mask", "split_windows",
]
