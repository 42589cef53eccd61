"""Cherimoya: a compact dilated-convolution model of base-resolution signal profiles and counts.

Spec: ``cherimoya.md`` §1. Read top to bottom: configuration helpers, the Cheri Block, the model,
then checkpoint reading and writing (our format and upstream Cherimoya 0.3.1 / CATv1 files, which
are the same ``{'config', 'state_dict'}`` layout).
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from strandwise.io.atomic import atomic_torch_save
from strandwise.kernels._host import env_flag, env_int
from strandwise.kernels.cheri_infer import cheri_block_inference, cheri_infer_eligible
from strandwise.kernels.cheri_train import cheri_block_train, cheri_train_eligible
from strandwise.kernels.conv_norm import FusedDilatedConvNorm
from strandwise.kernels.stem import stem_compute_dtype, stem_inference, stem_infer_eligible
from strandwise.models.cpu_chunks import chunk_size, has_module_hooks, run_chunked
from strandwise.models.cpu_gelu import gelu_tanh_cpu

__all__ = [
    "PRESETS",
    "CheriBlock",
    "Cherimoya",
    "CheckpointFormatError",
    "validate_signal_groups",
    "channel_permutation_from_groups",
    "default_trimming",
]

#: Defaults of the two named presets (spec §1.1, §1.2). ``description`` is the strandwise default.
PRESETS = {
    "description": {"n_filters": 96, "profile_kernel_size": 1},
    "upstream": {"n_filters": 128, "profile_kernel_size": 75},
}

#: The exact config keys of an upstream checkpoint (spec §1.9); any other key breaks upstream load.
UPSTREAM_CONFIG_KEYS = (
    "n_filters",
    "n_layers",
    "signal_groups",
    "n_control_tracks",
    "expansion",
    "residual_scale",
    "name",
    "trimming",
    "verbose",
)


class CheckpointFormatError(ValueError):
    """A file that is not a Cherimoya checkpoint, or one whose contents disagree with themselves."""


def validate_signal_groups(signal_groups) -> list[int]:
    """Normalise ``signal_groups``: ``None -> [1]``; else a non-empty list of positive ints.

    Raises
    ------
    ValueError
        For an empty list, zero, negatives, bools or non-ints (message says "non-empty list of
        positive ints").
    """
    if signal_groups is None:
        return [1]
    if isinstance(signal_groups, (str, bytes)) or not isinstance(signal_groups, Sequence):
        raise ValueError(
            f"signal_groups must be a non-empty list of positive ints; got {signal_groups!r}"
        )
    groups = list(signal_groups)
    if not groups or any(
        isinstance(g, bool) or not isinstance(g, int) or g <= 0 for g in groups
    ):
        raise ValueError(
            f"signal_groups must be a non-empty list of positive ints; got {signal_groups!r}"
        )
    return [int(g) for g in groups]


def channel_permutation_from_groups(signal_groups) -> list[int]:
    """Channel permutation for reverse complement: reverse channels *within* each group.

    ``[1, 2] -> [0, 2, 1]``, ``[2, 1] -> [1, 0, 2]``, ``[1, 2, 1, 2] -> [0, 2, 1, 3, 5, 4]``.
    """
    perm, start = [], 0
    for g in validate_signal_groups(signal_groups):
        perm.extend(range(start + g - 1, start - 1, -1))
        start += g
    return perm


def default_trimming(n_layers: int) -> int:
    """Upstream's default trimming ``46 + Σ_{i<n_layers} 2**i`` (557 for 9 layers)."""
    return 46 + sum(2**i for i in range(n_layers))


def fused_training_default() -> bool:
    """Default of :attr:`CheriBlock.fused_training`: on, unless the environment sets
    ``STRANDWISE_FUSED_TRAINING=0`` (for runs started from the command line or a config, e.g.
    ``STRANDWISE_FUSED_TRAINING=0 strandwise fit config.json``). Other values than ``0``/``1``
    raise, so a typo does not silently keep the default."""
    return env_flag("STRANDWISE_FUSED_TRAINING", True)


class CheriBlock(nn.Module):
    """One Cheri Block on channels-last activations ``(N, L, C)``.

    ``out = x + residual_scale · linear2(gelu_tanh(linear1(conv_norm(x))))``, where ``conv_norm`` is
    the fused dilated depthwise conv + per-example (L, C) normalization.

    Parameters
    ----------
    n_filters : int
        Channels ``C``.
    dilation : int
        Spacing of the three depthwise taps.
    expansion : int
        Hidden width factor of the MLP (``H = expansion · C``).
    residual_scale : float
        Fixed (not learned) scale of the MLP branch.

    Notes
    -----
    The taps live on the sub-module ``conv`` (so attribution hooks have a node) but the state dict
    names them ``blocks.N.conv_weight`` in upstream's position; both spellings load.
    """

    def __init__(self, n_filters: int, dilation: int, expansion: int = 2, residual_scale: float = 0.15):
        super().__init__()
        self.n_filters = int(n_filters)
        self.dilation = int(dilation)
        self.expansion = int(expansion)
        self.residual_scale = float(residual_scale)
        #: product precision of the no-grad CUDA megakernel for fp32 input (see
        #: :meth:`Cherimoya.set_inference_fp32_dot`); runtime only, never saved
        self.fp32_dot = "bf16"
        #: whether half-precision CUDA training runs the fused block (:mod:`strandwise.kernels.cheri_train`;
        #: on by default, off with STRANDWISE_FUSED_TRAINING=0 in the environment, see
        #: :meth:`Cherimoya.set_fused_training`); runtime only, never saved
        self.fused_training = fused_training_default()
        self.conv = FusedDilatedConvNorm(self.n_filters, self.dilation)
        self.linear1 = nn.Linear(self.n_filters, self.expansion * self.n_filters, bias=False)
        self.linear2 = nn.Linear(self.expansion * self.n_filters, self.n_filters, bias=False)
        self.activation = nn.GELU(approximate="tanh")
        self._register_state_dict_hook(_emit_legacy_conv_key)
        self._register_load_state_dict_pre_hook(_accept_both_conv_keys)

    @property
    def conv_weight(self) -> nn.Parameter:
        """Read-only alias of ``conv.conv_weight`` (shape ``(3, C)``)."""
        return self.conv.conv_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # CUDA + no grad: the fused inference megakernel (spec §2.6); falls back silently when the
        # shapes/dtypes are not eligible. CPU tensors never take this branch.
        if x.is_cuda and not torch.is_grad_enabled():
            cw, w1, w2 = self.conv.conv_weight, self.linear1.weight, self.linear2.weight
            if cheri_infer_eligible(x, cw, w1, w2):
                return cheri_block_inference(x, cw, w1, w2, self.dilation, self.residual_scale,
                                             fp32_dot=self.fp32_dot)
        # CUDA + grad + bf16/fp16 activations: the fused training block (one Function, forward
        # and backward in Triton); not with module hooks, which must see the sub-modules' calls,
        # nor inside torch.compile (its launches are not custom ops)
        if (x.is_cuda and self.fused_training and torch.is_grad_enabled()
                and not torch.compiler.is_compiling()):
            cw, w1, w2 = self.conv.conv_weight, self.linear1.weight, self.linear2.weight
            if cheri_train_eligible(x, cw, w1, w2) and not has_module_hooks(self):
                return cheri_block_train(x, cw, w1, w2, self.dilation, self.residual_scale)
        z = self.linear1(self.conv(x))
        if _cpu_gelu_applies(self, z):
            h = gelu_tanh_cpu(z, inplace=True)  # same function, cache-chunked (models/cpu_gelu.py)
        else:
            h = self.activation(z)
        if x.is_cuda:
            # residual scale folded into W2, as in the inference megakernel: x + h·(s·W2)ᵀ is one
            # product and one add forward, and the backward needs no full-size multiply by s
            return torch.add(x, F.linear(h, self.linear2.weight * self.residual_scale))
        return x + self.residual_scale * self.linear2(h)

    def extra_repr(self) -> str:
        return f"dilation={self.dilation}, residual_scale={self.residual_scale}"


def _cpu_gelu_applies(module: nn.Module, z: torch.Tensor) -> bool:
    """Whether ``module``'s GELU(tanh) of ``z`` may be :func:`gelu_tanh_cpu`: a CPU tensor with no
    gradient needed (inference), not under ``torch.compile``, and no module hooks (they must see
    the ``nn.GELU`` call).

    Training keeps ``nn.GELU``: the chunked forward gave no reliable gain in a training step
    (two A/B runs, +5 % and -4 %; BENCHMARKS.md, CPU path). Its one-ulp differences from
    PyTorch's GELU once looked like a DDP bug; they were rounding-level chaos through Muon's
    bf16 Newton-Schulz, which ``tests/train/test_ddp.py`` now allows for."""
    return (z.device.type == "cpu" and not (torch.is_grad_enabled() and z.requires_grad)
            and not torch.compiler.is_compiling() and not has_module_hooks(module))


def _emit_legacy_conv_key(module, state_dict, prefix, local_metadata):
    """Rename ``{prefix}conv.conv_weight`` to ``{prefix}conv_weight`` in place of order."""
    old, new = prefix + "conv.conv_weight", prefix + "conv_weight"
    if old not in state_dict:
        return state_dict
    items = [(new if k == old else k, v) for k, v in state_dict.items()]
    state_dict.clear()
    state_dict.update(items)
    return state_dict


def _accept_both_conv_keys(state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    """Accept ``conv_weight`` and ``conv.conv_weight``; the sub-module spelling wins if both exist."""
    legacy, sub = prefix + "conv_weight", prefix + "conv.conv_weight"
    if legacy in state_dict:
        value = state_dict.pop(legacy)
        state_dict.setdefault(sub, value)


#: Examples per chunk of a no-grad GPU forward (``STRANDWISE_GPU_INFER_CHUNK``, read at import;
#: 0 = the whole batch at once, the default). See :meth:`Cherimoya.gpu_chunk_size`.
GPU_INFER_CHUNK = {"n": env_int("STRANDWISE_GPU_INFER_CHUNK", 0, 0)}


class Cherimoya(nn.Module):
    """Cherimoya base-resolution profile + count model.

    ``X (N, 4, L)`` one-hot DNA (+ optional controls ``(N, K, L)``) →
    profile logits ``(N, O, L − 2t)`` and predicted ``log(1 + counts)`` ``(N, G)``.

    Parameters
    ----------
    n_filters : int, optional
        Channels ``F`` of the stem and every block (preset default: 96 description, 128 upstream).
    n_layers : int
        Number of Cheri Blocks; block ``i`` has dilation ``2**i``.
    signal_groups : list of int, optional
        Sizes of the signal groups: ``O = sum`` profile channels, ``G = len`` count outputs.
        ``[2]`` is one stranded track; ``[1, 2, 2]`` three tasks. Default ``[1]``.
    n_control_tracks : int
        ``K`` control tracks fed to the profile head (and ``log(1 + Σ controls)`` to the count head).
    expansion : int
        MLP expansion factor of each block.
    residual_scale : float
        Fixed scale of each block's MLP branch (0.15).
    name : str, optional
        Default ``"cherimoya.{F}.{n_layers}"``.
    trimming : int, optional
        Positions cropped from each end of the output. Default ``46 + Σ 2**i`` (557 for 9 layers).
    verbose : bool
        Kept for upstream compatibility; unused.
    compile : bool
        Wrap the forward in ``torch.compile`` (opt-in; runtime only, never saved).
    compile_mode : str
        Mode for ``torch.compile``.
    random_state : int, optional
        Seeds a local generator for every weight draw (the global RNG stream is left alone).
    profile_kernel_size : int, optional
        Odd kernel size of the profile head (1 description, 75 upstream).
    preset : {"description", "upstream"}
        Supplies defaults for ``n_filters`` and ``profile_kernel_size``.
    """

    def __init__(
        self,
        n_filters: int | None = None,
        n_layers: int = 9,
        signal_groups=None,
        n_control_tracks: int = 0,
        expansion: int = 2,
        residual_scale: float = 0.15,
        name: str | None = None,
        trimming: int | None = None,
        verbose: bool = False,
        compile: bool = False,
        compile_mode: str = "max-autotune",
        random_state: int | None = None,
        profile_kernel_size: int | None = None,
        preset: str = "description",
    ):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        defaults = PRESETS[preset]
        n_filters = defaults["n_filters"] if n_filters is None else n_filters
        k = defaults["profile_kernel_size"] if profile_kernel_size is None else profile_kernel_size
        for label, value in (("n_filters", n_filters), ("n_layers", n_layers), ("expansion", expansion)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int; got {value!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"profile_kernel_size must be a positive odd int; got {k!r}")
        if isinstance(n_control_tracks, bool) or not isinstance(n_control_tracks, int) or n_control_tracks < 0:
            raise ValueError(f"n_control_tracks must be a non-negative int; got {n_control_tracks!r}")

        self.preset = preset
        self.n_filters = n_filters
        self.n_layers = n_layers
        self.signal_groups = validate_signal_groups(signal_groups)
        self.n_outputs = sum(self.signal_groups)
        self.n_groups = len(self.signal_groups)
        self.n_control_tracks = n_control_tracks
        self.expansion = expansion
        self.residual_scale = float(residual_scale)
        self.profile_kernel_size = k
        self.name = name if name is not None else f"cherimoya.{n_filters}.{n_layers}"
        self.trimming = default_trimming(n_layers) if trimming is None else int(trimming)
        if self.trimming < 0:
            raise ValueError(f"trimming must be >= 0; got {trimming}")
        self.verbose = False

        F_, K = n_filters, n_control_tracks
        self.iconv = nn.Conv1d(4, F_, kernel_size=21, padding=10)
        self.igelu = nn.GELU(approximate="tanh")
        self.blocks = nn.ModuleList(
            CheriBlock(F_, 2**i, expansion, self.residual_scale) for i in range(n_layers)
        )
        self.fconv = nn.Conv1d(F_ + K, self.n_outputs, kernel_size=k, padding=k // 2)
        self.linear = nn.Linear(F_ + (1 if K > 0 else 0), self.n_groups)
        self.lw0 = nn.Parameter(torch.ones(self.n_groups))
        self.lw1 = nn.Parameter(torch.ones(self.n_groups))
        self.reset_parameters(random_state)

        self._compiled_forward = None
        if compile:
            self._compiled_forward = torch.compile(self._forward, mode=compile_mode)

    def set_inference_fp32_dot(self, mode: str) -> "Cherimoya":
        """Product precision of CUDA inference (grad disabled) on fp32 inputs.

        Sets the ``fp32_dot`` of every block's inference megakernel
        (:func:`strandwise.kernels.cheri_infer.cheri_block_inference`): ``"bf16"`` (default,
        upstream 0.3.1's choice) rounds the operands of the block's two products to bf16 and
        accumulates in fp32; ``"tf32"`` uses TF32 tensor cores; ``"ieee"`` exact fp32 products on
        the ordinary FP32 units (slow: ~0.9k sequences/s at batch 512 on an H200, for parity
        checks). The residual stream, taps and normalisation stay fp32 in every mode. The stem
        runs as one Triton kernel with a three-term bf16 split of its product (~2^-16 relative)
        in ``"bf16"`` and ``"tf32"`` modes, and as PyTorch's matmul in ``"ieee"``; the heads
        follow PyTorch's matmul settings. Training, anything with autograd recording,
        bf16/fp16 inputs and the CPU path are unaffected.
        Runtime only: not saved with the model. Returns ``self``.
        """
        from strandwise.kernels.cheri_infer import FP32_DOT_MODES

        if mode not in FP32_DOT_MODES:
            raise ValueError(f"inference fp32 dot mode must be one of {FP32_DOT_MODES}; got {mode!r}")
        for block in self.blocks:
            block.fp32_dot = mode
        return self

    def set_fused_training(self, enabled: bool = True) -> "Cherimoya":
        """Whether every block runs as one fused Function when training on CUDA with bf16/fp16
        activations (autocast or a half model): :mod:`strandwise.kernels.cheri_train` — the
        megakernel's forward, which also stores the products' operands, and a backward with the
        MLP's input gradient and GELU derivative in one Triton kernel and the residual gradient
        added inside the conv-norm backward. On by default (faster and within bf16 rounding of
        the unfused path; figures in BENCHMARKS.md); ``set_fused_training(False)`` returns to the
        unfused CUDA path (conv-norm Function + cuBLAS products under autocast). fp32 training,
        the CPU path, inference and models with module hooks are unaffected. Runtime only: not
        saved with the model. Returns ``self``.
        """
        for block in self.blocks:
            block.fused_training = bool(enabled)
        return self

    @property
    def inference_fp32_dot(self) -> str:
        """The blocks' inference product mode (see :meth:`set_inference_fp32_dot`)."""
        return self.blocks[0].fp32_dot if len(self.blocks) else "bf16"

    # ------------------------------------------------------------------ init
    def reset_parameters(self, random_state: int | None = None) -> None:
        """Upstream init: trunc-normal(0, 0.02) weights, zero biases, ``lw = 1``.

        Draw order (for RNG-exact reproduction): per block ``conv_weight``, ``linear1``,
        ``linear2``; then ``iconv``, ``fconv``, ``linear`` weights — all from one generator.
        """
        gen = None
        if random_state is not None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(random_state))

        def draw(p):
            with torch.no_grad():
                buf = torch.empty(p.shape, dtype=torch.float32)
                nn.init.trunc_normal_(buf, mean=0.0, std=0.02, a=-2.0, b=2.0, generator=gen)
                p.copy_(buf)

        for block in self.blocks:
            draw(block.conv.conv_weight)
            draw(block.linear1.weight)
            draw(block.linear2.weight)
        draw(self.iconv.weight)
        draw(self.fconv.weight)
        draw(self.linear.weight)
        with torch.no_grad():
            for bias in (self.iconv.bias, self.fconv.bias, self.linear.bias):
                bias.zero_()
            self.lw0.fill_(1.0)
            self.lw1.fill_(1.0)

    # --------------------------------------------------------------- forward
    def _check_inputs(self, X, X_ctl):
        if not isinstance(X, torch.Tensor) or X.ndim != 3 or X.shape[1] != 4:
            shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
            raise ValueError(f"Cherimoya expects one-hot DNA X of shape (N, 4, L); got {shape}")
        if not X.is_floating_point():
            raise TypeError(
                f"Cherimoya expects a floating-point X; got {X.dtype} (use X.float())"
            )
        L = X.shape[-1]
        if L - 2 * self.trimming <= 0:
            raise ValueError(
                f"input length {L} leaves no output after trimming {self.trimming} from each end "
                f"(need L > {2 * self.trimming})"
            )
        K = self.n_control_tracks
        if K > 0:
            if X_ctl is None:
                raise ValueError(f"this model has {K} control track(s): pass X_ctl of shape (N, {K}, {L})")
            if X_ctl.shape != (X.shape[0], K, L):
                raise ValueError(
                    f"X_ctl must have shape {(X.shape[0], K, L)}; got {tuple(X_ctl.shape)}"
                )
        elif X_ctl is not None:
            raise ValueError("this model has no control tracks, but X_ctl was given")

    def _forward(self, X, X_ctl=None):
        if X.is_cuda:
            return run_chunked(self, self._forward_channels_last, self.gpu_chunk_size(X.shape[0]),
                               X, X_ctl, any_device=True)
        # whole batch when it fits one chunk or hooks are registered (DeepLIFT/SHAP, capture)
        step = self.cpu_chunk_size(X.shape[-1], X.element_size())
        return run_chunked(self, self._forward_cpu, step, X, X_ctl)

    def gpu_chunk_size(self, n: int) -> int:
        """Examples per chunk of a GPU forward: :data:`GPU_INFER_CHUNK` ``["n"]`` under no-grad
        (inference) when set and smaller than the batch ``n``, else 0 (the whole batch at once).

        Experimental, off by default until timed: every operation of the model is per example,
        so a chunk's activations (e.g. 32 × 2,114 × 128 bf16 = 17 MB in and out of a block) can
        stay in the GPU's L2 cache (50 MB on an H100) from one block's statistics pass to its MLP
        pass and on to the next block, instead of the whole batch's going through DRAM
        (``STRANDWISE_GPU_INFER_CHUNK``; the results differ from the whole batch's only where a
        library kernel picks another reduction order for another batch size)."""
        chunk = GPU_INFER_CHUNK["n"]
        if chunk <= 0 or torch.is_grad_enabled() or n <= chunk:
            return 0
        return chunk

    def cpu_chunk_size(self, L: int, itemsize: int = 4) -> int:
        """Examples per chunk on the CPU path: the widest activation, the MLP's hidden
        ``(n, L, expansion·F)``, stays under :data:`strandwise.models.cpu_chunks.CPU_CHUNK_BYTES`.

        Every operation of the model is per example (the normalisation is over each example's own
        ``(L, C)``), so chunking changes no result beyond float rounding. Models with module hooks
        registered (attribution, activation capture) are not chunked. It matters for speed:
        larger tensors are fresh ``mmap`` allocations whose pages fault in on every use (glibc
        serves allocations over 32 MB that way), and they do not stay in cache between operations.
        On a 2-core CPU a training step at batch 64 × 2,114 bp went from 10.7 s to 3.9 s with
        chunks of 10 (BENCHMARKS.md, CPU path).
        """
        return chunk_size(L * self.expansion * self.n_filters * max(1, itemsize))

    def _forward_cpu(self, X, X_ctl=None):
        start, end = self.trimming, X.shape[-1] - self.trimming
        h = self.iconv(X)
        h = gelu_tanh_cpu(h, inplace=True) if _cpu_gelu_applies(self, h) else self.igelu(h)
        h = h.transpose(1, 2).contiguous()
        for block in self.blocks:
            h = block(h)
        h = h.transpose(1, 2).contiguous()
        z = h if X_ctl is None else torch.cat([h, X_ctl.to(h.dtype)], dim=1)
        # only the columns the cropped outputs read: the conv's own zero padding stands in for
        # the sequence ends exactly as it would on the whole length
        k2 = self.profile_kernel_size // 2
        r0, r1 = max(0, start - k2), min(X.shape[-1], end + k2)
        y_profile = self.fconv(z[:, :, r0:r1])[:, :, start - r0:end - r0]
        f = h[:, :, start:end].mean(dim=2, dtype=torch.promote_types(h.dtype, torch.float32))
        if X_ctl is not None:
            ctl_total = X_ctl[:, :, start:end].to(f.dtype).sum(dim=(1, 2))
            f = torch.cat([f, torch.log(ctl_total + 1).unsqueeze(1)], dim=1)
        y_counts = self.linear(f)
        return y_profile, y_counts

    def _stem_kernel_applies(self, X) -> bool:
        """The no-grad stem kernel runs unless products were asked to be exact fp32 (``"ieee"``)."""
        w = self.iconv.weight
        if not stem_infer_eligible(X, w, self.iconv.bias):
            return False
        return not (stem_compute_dtype(X, w) == torch.float32 and self.inference_fp32_dot == "ieee")

    def _forward_channels_last(self, X, X_ctl=None):
        """Same function as the CPU forward, arranged for GPUs (used for CUDA tensors only).

        Profiling the default model showed cuDNN's kernels for the two wide convolutions dominating
        (the k=75 head's input-gradient alone took ~90 ms of a 100 ms bf16 training step on an H200,
        a generic fallback kernel). Both are written here as matrix products on channels-last
        activations, which also removes both layout transposes:

        * stem: ``h[n, l] = gelu(unfold21(X)[n, l] · W_stem + b)`` with the 84 = 4·21 window values
          of each position as one row — under no-grad one Triton kernel
          (:func:`strandwise.kernels.stem.stem_inference`) that gathers the windows itself;
        * profile head: ``P = z · W_head`` with ``W_head (F+K, k·O)``, then output ``j`` sums the
          ``k`` diagonal entries ``P[n, start + j + t − k//2, t·O + o]`` — a non-overlapping strided
          view, so its gradient is a plain strided scatter. ``P`` is computed only for the rows
          the cropped outputs read (``start − k//2 … end + k//2``), about half of ``L`` at the
          upstream preset.

        Only the summation order differs from the CPU path (a few fp32 ulps).
        """
        N, _, L = X.shape
        start, end = self.trimming, L - self.trimming
        kw = self.iconv.kernel_size[0]
        pad = kw // 2
        if self._stem_kernel_applies(X):
            # no grad: one Triton pass (window gather + product + bias + GELU), no unfolded copy
            h = stem_inference(X, self.iconv.weight, self.iconv.bias)
        else:
            Xu = F.pad(X, (pad, pad)).unfold(2, kw, 1)  # (N, 4, L, kw)
            Xu = Xu.permute(0, 2, 1, 3).reshape(N, L, 4 * kw)
            h = self.igelu(F.linear(Xu, self.iconv.weight.reshape(self.n_filters, 4 * kw), self.iconv.bias))
        for block in self.blocks:
            h = block(h)
        z = h if X_ctl is None else torch.cat([h, X_ctl.transpose(1, 2).to(h.dtype)], dim=2)
        O, k = self.n_outputs, self.profile_kernel_size
        w = self.fconv.weight  # (O, F+K, k)
        lo, hi = start - k // 2, end + k // 2  # rows of P that the cropped outputs read
        r0, r1 = max(0, lo), min(L, hi)
        # P only for those rows (1,074 of 2,114 at the upstream preset): a batched product over the
        # row slice of z, which needs no copy of it; the weight is cast before the expand so that
        # autocast does not materialise N copies
        wt = w.permute(1, 2, 0).reshape(w.shape[1], k * O)  # (F+K, k·O), col t·O + o
        if torch.is_autocast_enabled(z.device.type):
            wt = wt.to(torch.get_autocast_dtype(z.device.type))
        P = torch.bmm(z[:, r0:r1], wt.unsqueeze(0).expand(N, -1, -1))  # (N, r1 - r0, k·O)
        pl, pr = r0 - lo, hi - r1
        if pl or pr:
            P = F.pad(P, (0, 0, pl, pr))
        P = P.contiguous()
        L_out = end - start
        view = P.as_strided(
            (N, L_out, k, O),
            (P.stride(0), k * O, k * O + O, 1),
            P.storage_offset(),
        )
        y_profile = (view.sum(dim=2) + self.fconv.bias.to(view.dtype)).transpose(1, 2)
        # the mean accumulates in fp32 while it reads h: a bf16 h is not first copied to fp32 (that
        # cast was ~0.23 ms of a 6.9 ms bf16 inference call at batch 512 on an H100, round 19)
        f = h[:, start:end].mean(dim=1, dtype=torch.promote_types(h.dtype, torch.float32))
        if X_ctl is not None:
            ctl_total = X_ctl[:, :, start:end].to(f.dtype).sum(dim=(1, 2))
            f = torch.cat([f, torch.log(ctl_total + 1).unsqueeze(1)], dim=1)
        y_counts = self.linear(f)
        return y_profile, y_counts

    def forward(self, X: torch.Tensor, X_ctl: torch.Tensor | None = None):
        """Predict profiles and counts.

        Parameters
        ----------
        X : torch.Tensor, shape (N, 4, L), floating
        X_ctl : torch.Tensor, shape (N, K, L), optional
            Required iff the model has control tracks.

        Returns
        -------
        y_profile : torch.Tensor, shape (N, O, L - 2·trimming)
            Unnormalised profile logits.
        y_counts : torch.Tensor, shape (N, G)
            Predicted ``log(1 + total count)`` per signal group.
        """
        self._check_inputs(X, X_ctl)
        fwd = self._compiled_forward or self._forward
        return fwd(X, X_ctl)

    # ----------------------------------------------------------- properties
    @property
    def receptive_field(self) -> int:
        """Convolutional receptive field of one profile output (bp): ``2·reach + 1``."""
        reach = 10 + sum(2**i for i in range(self.n_layers)) + (self.profile_kernel_size - 1) // 2
        return 2 * reach + 1

    def output_length(self, input_length: int) -> int:
        """Profile length for an input of ``input_length`` bp."""
        return input_length - 2 * self.trimming

    def config(self) -> dict:
        """The upstream-compatible config dict (exactly the keys of spec §1.9)."""
        return {
            "n_filters": self.n_filters,
            "n_layers": self.n_layers,
            "signal_groups": list(self.signal_groups),
            "n_control_tracks": self.n_control_tracks,
            "expansion": self.expansion,
            "residual_scale": self.residual_scale,
            "name": self.name,
            "trimming": self.trimming,
            "verbose": False,
        }

    # ----------------------------------------------------------- checkpoints
    def checkpoint_payload(self, state_dict: dict | None = None) -> dict:
        """The dict :meth:`save` writes. Extra strandwise settings go outside ``config``."""
        sd = self.state_dict() if state_dict is None else state_dict
        payload = {
            "config": self.config(),
            "state_dict": OrderedDict((k, v.detach().cpu().clone()) for k, v in sd.items()),
        }
        if self.profile_kernel_size != PRESETS["upstream"]["profile_kernel_size"]:
            # Upstream rebuilds with cls(**config); keep our extra settings where it won't look.
            payload["strandwise"] = {"profile_kernel_size": self.profile_kernel_size}
        return payload

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically: ``{'config', 'state_dict'[, 'strandwise']}``.

        Loadable with ``torch.load(path, weights_only=True)`` and, for 75-bp heads, by upstream
        Cherimoya itself.
        """
        atomic_torch_save(self.checkpoint_payload(), path)

    @classmethod
    def from_payload(cls, payload, device="cpu", **runtime) -> "Cherimoya":
        """Build a model from a checkpoint dict (ours or upstream 0.3.1 / CATv1)."""
        if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
            keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise CheckpointFormatError(
                "not a Cherimoya checkpoint: expected a dict with 'config' and 'state_dict' "
                f"(got {keys}); pickled whole-module files from cherimoya < 0.1.0 are not supported"
            )
        config = dict(payload["config"])
        extra = dict(payload.get("strandwise") or {})
        unknown = sorted(set(config) - set(UPSTREAM_CONFIG_KEYS))
        if unknown:
            raise CheckpointFormatError(
                f"unknown Cherimoya checkpoint config key(s) {unknown}; configs with n_outputs or "
                "single_count_output come from cherimoya < 0.1.1 and are not supported"
            )
        state = OrderedDict(payload["state_dict"])  # never mutate the caller's payload
        _check_state_against_config(config, state)
        head = state["fconv.weight"].shape[-1]
        k = int(extra.get("profile_kernel_size", head))
        if k != head:
            raise CheckpointFormatError(
                f"checkpoint says profile_kernel_size={k} but fconv.weight has kernel {head}"
            )
        config.pop("verbose", None)
        model = cls(**config, profile_kernel_size=k, **runtime)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointFormatError(
                f"checkpoint does not match the architecture: missing {missing}, unexpected {unexpected}"
            )
        return model.to(device)

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu", **runtime) -> "Cherimoya":
        """Load a checkpoint written by :meth:`save` or by upstream Cherimoya (0.3.1, CATv1).

        Parameters
        ----------
        path : str
            The ``.torch`` file.
        device : str or torch.device
            Where to put the model.
        **runtime
            Runtime-only options such as ``compile=True``.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise CheckpointFormatError(
                f"{path} is not a readable Cherimoya checkpoint ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        return cls.from_payload(payload, device=device, **runtime)


def _check_state_against_config(config: dict, state: dict) -> None:
    for key in ("iconv.weight", "fconv.weight", "linear.weight"):
        if key not in state:
            raise CheckpointFormatError(f"checkpoint state_dict lacks {key!r}")
    block_ids = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    n_layers = int(config.get("n_layers", -1))
    if block_ids and block_ids != set(range(n_layers)):
        raise CheckpointFormatError(
            f"config says n_layers={n_layers} but the state_dict has {len(block_ids)} blocks"
        )
    n_filters = state["iconv.weight"].shape[0]
    if int(config.get("n_filters", -1)) != n_filters:
        raise CheckpointFormatError(
            f"config says n_filters={config.get('n_filters')} but iconv.weight has {n_filters} filters"
        )
