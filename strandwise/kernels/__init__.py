"""Compute ops: each op has a pure-PyTorch reference, a Triton path for CUDA, and a dispatcher."""

from strandwise.kernels.causal_conv import causal_conv1d, causal_conv1d_silu
from strandwise.kernels.cheri_infer import (
    cheri_block_inference,
    cheri_block_reference,
    cheri_infer_eligible,
    clear_derived_weight_cache,
)
from strandwise.kernels.cheri_train import CheriBlockTrainFunc, cheri_block_train, cheri_train_eligible
from strandwise.kernels.conv_norm import (
    CONV_NORM_EPS,
    FusedDilatedConvNorm,
    FusedDilatedConvNormFunc,
    _cheri_conv_norm_cpu,
    fused_dilated_conv_norm,
    triton_available,
)
from strandwise.kernels.selective_scan import (
    selective_scan_chunked,
    selective_scan_fn,
    selective_scan_naive,
)

__all__ = [
    "causal_conv1d",
    "causal_conv1d_silu",
    "CONV_NORM_EPS",
    "FusedDilatedConvNorm",
    "FusedDilatedConvNormFunc",
    "_cheri_conv_norm_cpu",
    "fused_dilated_conv_norm",
    "triton_available",
    "cheri_block_inference",
    "cheri_block_reference",
    "cheri_infer_eligible",
    "clear_derived_weight_cache",
    "CheriBlockTrainFunc",
    "cheri_block_train",
    "cheri_train_eligible",
    "selective_scan_chunked",
    "selective_scan_fn",
    "selective_scan_naive",
]
