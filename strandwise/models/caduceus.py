"""Caduceus: a reverse-complement-equivariant bidirectional Mamba language model over DNA.

Spec: ``caduceus.md`` §1–§5. Read top to bottom, in the style of a Hugging Face modeling file:

1. :class:`CaduceusConfig` (reads and writes the hub ``config.json``) and the published presets;
2. :class:`BiMambaWrapper` (forward + reverse Mamba, in/out projections tied);
3. the RCPS layers (:class:`RCPSEmbedding`, :class:`RCPSWrapper`, :class:`RCPSAddNormWrapper`,
   :class:`RCPSMambaBlock`, :class:`RCPSLMHead`) and the plain block of the Ph variant;
4. :class:`CaduceusEmbeddings`, :class:`CaduceusMixerModel`, :class:`Caduceus`;
5. heads: :class:`CaduceusForMaskedLM`, :class:`CaduceusForSequenceClassification`,
   :class:`DNAEmbeddingModelCaduceus`, :class:`CaduceusProjector` and strand pooling helpers;
6. checkpoints: ``from_pretrained`` / ``save_pretrained`` on local directories.

Conventions. A PS (RCPS) hidden tensor has ``2d`` channels ``[X_f | X_r]``; ``RC(X)`` flips length
and channels; ``swap([a | b]) = [b | a]``. Equivariance of the whole PS backbone::

    h(rc(ids)) = RC(h(ids))        (rc(ids) = comp[flip_L(ids)])
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from strandwise.io.atomic import atomic_path, atomic_torch_save, atomic_write_text
from strandwise.kernels.add_rms_norm import add_rms_norm
from strandwise.models import cpu_chunks
from strandwise.models.mamba import Mamba, RMSNorm, fused_inner_suspended

__all__ = [
    "CaduceusConfig",
    "PUBLISHED_CONFIGS",
    "published_config",
    "BiMambaWrapper",
    "RCPSEmbedding",
    "RCPSWrapper",
    "RCPSAddNormWrapper",
    "RCPSMambaBlock",
    "CaduceusBlock",
    "RCPSLMHead",
    "CaduceusEmbeddings",
    "CaduceusMixerModel",
    "Caduceus",
    "CaduceusOutput",
    "MaskedLMOutput",
    "SequenceClassifierOutput",
    "CaduceusForMaskedLM",
    "CaduceusForSequenceClassification",
    "DNAEmbeddingModelCaduceus",
    "CaduceusProjector",
    "CaduceusCheckpointError",
    "rc",
    "swap_halves",
    "rc_half",
    "collapse_strands",
    "strand_features",
    "pool_hidden",
    "strand_invariant_pool",
    "strand_invariant_pool_concat",
    "guarded_cross_entropy",
    "load_caduceus",
    "alias_map",
]

DEFAULT_PAD_TOKEN_ID = 4  # published configs have no pad_token_id; [PAD] = 4 (spec §2, §6.6)


# ================================================================================================
# 1. Configuration
# ================================================================================================

#: ``ssm_cfg`` of every published checkpoint (spec §3.1).
PUBLISHED_SSM_CFG = {
    "d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "dt_min": 0.001, "dt_max": 0.1,
    "dt_init": "random", "dt_scale": 1.0, "dt_init_floor": 1e-4, "conv_bias": True, "bias": False,
    "use_fast_path": True,
}
PUBLISHED_INITIALIZER_CFG = {
    "initializer_range": 0.02, "rescale_prenorm_residual": True, "n_residuals_per_layer": 1,
}
#: Keys a Hugging Face ``PretrainedConfig`` writes that the model does not use; kept verbatim.
_HF_CONFIG_KEYS = {
    "architectures", "auto_map", "model_type", "torch_dtype", "transformers_version",
    "_name_or_path", "tie_word_embeddings", "return_dict", "output_hidden_states",
    "output_attentions", "use_return_dict", "id2label", "label2id", "num_labels",
    "problem_type", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
}


def _complement_from_json(cm) -> dict[int, int] | None:
    if cm is None:
        return None
    if isinstance(cm, (list, tuple)):
        return {i: int(v) for i, v in enumerate(cm)}
    if not isinstance(cm, dict):
        raise ValueError(f"complement_map must be a dict id->id; got {type(cm).__name__}")
    return {int(k): int(v) for k, v in cm.items()}


@dataclass
class CaduceusConfig:
    """Caduceus hyper-parameters; the fields and defaults of upstream ``CaduceusConfig`` (§3.1).

    Extra fields (strandwise): ``pad_token_id`` (None means 4, the loss ignore index),
    ``gradient_checkpointing`` and ``gradient_checkpointing_stride`` (recompute blocks in segments
    of ``stride`` consecutive blocks during training), ``gradient_checkpointing_blocks`` (None:
    every block is recomputed; k: only the first k blocks are, the others keep their activations —
    faster, at a memory cost per block that docs/caduceus.md gives), and ``extras`` (Hugging Face keys that the
    model ignores, kept so that read → write → read is the identity).

    Raises
    ------
    ValueError
        On a non-positive ``d_model``/``n_layer``, an unknown ``bidirectional_strategy``, an RCPS
        config without a valid complement map, or ``rms_norm=False`` (LayerNorm is not provided).
    """

    d_model: int = 2560
    n_layer: int = 64
    vocab_size: int = 50277
    ssm_cfg: dict | None = None
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    norm_epsilon: float = 1e-5
    initializer_cfg: dict | None = None
    bidirectional: bool = True
    bidirectional_strategy: str | None = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = False
    complement_map: dict | None = None
    pad_token_id: int | None = None
    gradient_checkpointing: bool = False
    gradient_checkpointing_stride: int = 1
    gradient_checkpointing_blocks: int | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple", "gradient_checkpointing_stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"CaduceusConfig.{name} must be a positive int; got {v!r}")
        k = self.gradient_checkpointing_blocks
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self.n_layer):
            raise ValueError(
                f"CaduceusConfig.gradient_checkpointing_blocks must be None or an int in 0..n_layer "
                f"({self.n_layer}); got {k!r}"
            )
        if self.bidirectional_strategy not in (None, "add", "ew_multiply"):
            raise ValueError(
                f"bidirectional_strategy must be 'add', 'ew_multiply' or None; got "
                f"{self.bidirectional_strategy!r}"
            )
        if not self.rms_norm:
            raise ValueError("rms_norm=False (LayerNorm) is not supported; every Caduceus uses RMSNorm")
        self.complement_map = _complement_from_json(self.complement_map)
        if self.rcps:
            if self.complement_map is None:
                raise ValueError("rcps=True needs a complement_map (token id -> complement id)")
            cm = self.full_complement_map()
            for i, j in enumerate(cm):
                if not 0 <= j < len(cm) or cm[j] != i:
                    raise ValueError(
                        f"complement_map must be an involution on ids 0..{len(cm) - 1} for RCPS; "
                        f"id {i} -> {j} -> {cm[j] if 0 <= j < len(cm) else 'out of range'}"
                    )
        if self.ssm_cfg is not None and not isinstance(self.ssm_cfg, dict):
            raise ValueError(f"ssm_cfg must be a dict; got {type(self.ssm_cfg).__name__}")

    # -------------------------------------------------------------- derived values
    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size + (-self.vocab_size) % m

    @property
    def ignore_index(self) -> int:
        return DEFAULT_PAD_TOKEN_ID if self.pad_token_id is None else int(self.pad_token_id)

    def full_complement_map(self) -> list[int]:
        """``[cm[i] for i in range(V)]`` over the padded vocab, identity where the map is silent."""
        cm = self.complement_map or {}
        return [int(cm.get(i, i)) for i in range(self.padded_vocab_size)]

    def pad_vocab(self) -> None:
        """Pad ``vocab_size`` to the multiple and extend the complement map (upstream mutates too)."""
        if self.vocab_size != self.padded_vocab_size:
            self.vocab_size = self.padded_vocab_size
        if self.complement_map is not None:
            self.complement_map = {i: v for i, v in enumerate(self.full_complement_map())}

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extras":
                continue
            v = getattr(self, f.name)
            if f.name == "complement_map" and v is not None:
                v = {str(k): int(val) for k, val in v.items()}
            if f.name in ("pad_token_id", "gradient_checkpointing_blocks") and v is None:
                continue
            out[f.name] = v
        out.update(self.extras)
        return out

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "CaduceusConfig":
        """Build from a hub-style dict: known fields are used, HF extras are kept verbatim.

        Raises ``ValueError`` naming any key that is neither a field nor a known HF extra.
        """
        names = {f.name for f in dataclasses.fields(cls)} - {"extras"}
        kwargs, extras, unknown = {}, dict(d.get("extras", {})), []
        for k, v in d.items():
            if k == "extras":
                continue
            if k in names:
                kwargs[k] = v
            elif k in _HF_CONFIG_KEYS:
                extras[k] = v
            else:
                unknown.append(k)
        if unknown:
            raise ValueError(f"unknown CaduceusConfig key(s): {sorted(unknown)}")
        return cls(**kwargs, extras=extras)

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike) -> "CaduceusConfig":
        """Read a config.json file (or a JSON string starting with '{')."""
        s = os.fspath(path_or_text)
        if s.lstrip().startswith("{"):
            return cls.from_dict(json.loads(s))
        with open(s, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def mamba_kwargs(self) -> dict:
        kw = dict(self.ssm_cfg or {})
        return kw


def _published(d_model: int, n_layer: int, rcps: bool) -> dict:
    """The config.json contents of a published checkpoint (spec §3.1, §3.2)."""
    cm = {str(i): i for i in range(16)} | {"7": 10, "8": 9, "9": 8, "10": 7}
    return {
        "d_model": d_model, "n_layer": n_layer, "vocab_size": 16,
        "ssm_cfg": dict(PUBLISHED_SSM_CFG), "rms_norm": True, "residual_in_fp32": False,
        "fused_add_norm": True, "pad_vocab_size_multiple": 8, "norm_epsilon": 1e-5,
        "initializer_cfg": dict(PUBLISHED_INITIALIZER_CFG), "bidirectional": True,
        "bidirectional_strategy": "add", "bidirectional_weight_tie": True, "rcps": rcps,
        "complement_map": cm, "architectures": ["CaduceusForMaskedLM"],
        "auto_map": {
            "AutoConfig": "configuration_caduceus.CaduceusConfig",
            "AutoModel": "modeling_caduceus.Caduceus",
            "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM",
            "AutoModelForSequenceClassification": "modeling_caduceus.CaduceusForSequenceClassification",
        },
        "model_type": "caduceus", "torch_dtype": "float32", "transformers_version": "4.38.1",
    }


#: Hub repo id (under ``kuleshov-group/``) -> config.json contents, for the six published models.
PUBLISHED_CONFIGS = {
    "caduceus-ps_seqlen-131k_d_model-256_n_layer-16": _published(256, 16, True),
    "caduceus-ph_seqlen-131k_d_model-256_n_layer-16": _published(256, 16, False),
    "caduceus-ps_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": _published(256, 4, True),
    "caduceus-ph_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": _published(256, 4, False),
    "caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": _published(118, 4, True),
    "caduceus-ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": _published(118, 4, False),
}


def published_config(name: str) -> CaduceusConfig:
    """:class:`CaduceusConfig` of a published checkpoint, by repo name (with or without owner)."""
    key = name.split("/")[-1]
    if key not in PUBLISHED_CONFIGS:
        raise KeyError(f"unknown published Caduceus {name!r}; known: {sorted(PUBLISHED_CONFIGS)}")
    return CaduceusConfig.from_dict(json.loads(json.dumps(PUBLISHED_CONFIGS[key])))


# ================================================================================================
# Tensor helpers for the two strands
# ================================================================================================


def rc(x: torch.Tensor) -> torch.Tensor:
    """``RC(X) = flip_L(flip_C(X))`` for ``(B, L, C)``."""
    return x.flip(-1).flip(-2)


def swap_halves(x: torch.Tensor) -> torch.Tensor:
    """``swap([a | b]) = [b | a]`` on the channel axis."""
    n = x.shape[-1] // 2
    return torch.cat([x[..., n:], x[..., :n]], dim=-1)


def _check_two_strands(x: torch.Tensor, who: str) -> int:
    if x.shape[-1] % 2:
        raise ValueError(
            f"{who} expects a [forward | RC] tensor with an even channel count (2·d_model); got "
            f"{x.shape[-1]} channels"
        )
    return x.shape[-1] // 2


# ================================================================================================
# 2. BiMamba
# ================================================================================================


class BiMambaWrapper(nn.Module):
    """``out = M_fwd(u) ⊕ flip_L(M_rev(flip_L(u)))`` with ⊕ = + ("add") or ⊙ ("ew_multiply").

    With ``bidirectional_weight_tie`` the reverse Mamba's ``in_proj`` and ``out_proj`` parameters
    are the forward ones (the same ``Parameter`` objects; both keys appear in ``state_dict``).
    The reverse direction runs anti-causally (``Mamba(reverse=True)``) rather than flipping.

    Parameters
    ----------
    d_model : int
    bidirectional : bool
        False keeps only ``mamba_fwd``.
    bidirectional_strategy : {"add", "ew_multiply", None}
    bidirectional_weight_tie : bool
    **mamba_kwargs
        Passed to :class:`~strandwise.models.mamba.Mamba`.
    """

    def __init__(self, d_model, bidirectional=True, bidirectional_strategy="add",
                 bidirectional_weight_tie=True, **mamba_kwargs):
        super().__init__()
        strategy = "add" if bidirectional_strategy is None else bidirectional_strategy
        if strategy not in ("add", "ew_multiply"):
            raise NotImplementedError(f"bidirectional_strategy {bidirectional_strategy!r} is not implemented")
        self.bidirectional = bool(bidirectional)
        self.bidirectional_strategy = strategy
        self.mamba_fwd = Mamba(d_model=d_model, **mamba_kwargs)
        if self.bidirectional:
            self.mamba_rev = Mamba(d_model=d_model, **mamba_kwargs)
            if bidirectional_weight_tie:
                self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
                self.mamba_rev.in_proj.bias = self.mamba_fwd.in_proj.bias
                self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight
                self.mamba_rev.out_proj.bias = self.mamba_fwd.out_proj.bias
        else:
            self.mamba_rev = None

    def forward(self, hidden_states: torch.Tensor, inference_params=None) -> torch.Tensor:
        out = self.mamba_fwd(hidden_states)
        if self.bidirectional:
            out_rev = self.mamba_rev(hidden_states, reverse=True)
            out = out + out_rev if self.bidirectional_strategy == "add" else out * out_rev
        return out


# ================================================================================================
# 3. RCPS layers (PS variant) and the plain block (Ph variant)
# ================================================================================================


class RCPSEmbedding(nn.Module):
    """``Emb(ids) = [E[ids] | RC(E[rc(ids)])]``, shape ``(B, L, 2d)`` (spec §4.1).

    Per token this is local: ``[E[v_t] | flip_C(E[comp(v_t)])]``; ``Emb(rc(ids)) = RC(Emb(ids))``.

    Parameters
    ----------
    vocab_size, d_model : int
    complement_map : sequence of int
        Length ``vocab_size``; stored as the persistent int64 buffer ``complement_map``.
    """

    def __init__(self, vocab_size: int, d_model: int, complement_map, **factory):
        super().__init__()
        cm = torch.as_tensor(list(complement_map), dtype=torch.int64)
        if cm.numel() != vocab_size:
            raise ValueError(f"complement_map has {cm.numel()} entries; vocab_size is {vocab_size}")
        self.register_buffer("complement_map", cm)
        self.embedding = nn.Embedding(vocab_size, d_model, **factory)

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        V = self.embedding.num_embeddings
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
            raise ValueError(f"token ids must lie in [0, {V}); got [{int(input_ids.min())}, {int(input_ids.max())}]")
        fwd = self.embedding(input_ids)
        rc_emb = self.embedding(self.complement_map[input_ids]).flip(-1)
        return torch.cat([fwd, rc_emb], dim=-1)


class RCPSWrapper(nn.Module):
    """``W(X) = [f(X_f) | RC(f(RC(X_r)))]``, one ``f`` shared by both strands (spec §4.2).

    Both strands go through ``f`` as one batch of ``2B`` sequences (same result, half the calls).
    """

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        n = _check_two_strands(x, "RCPSWrapper")
        B = x.shape[0]
        if not torch.is_grad_enabled():
            # Inference: one strand at a time halves the peak of the mixer's temporaries.
            fwd = self.submodule(x[..., :n], **kwargs)
            return torch.cat([fwd, rc(self.submodule(rc(x[..., n:]), **kwargs))], dim=-1)
        both = torch.cat([x[..., :n], rc(x[..., n:])], dim=0)
        y = self.submodule(both, **kwargs)
        return torch.cat([y[:B], rc(y[B:])], dim=-1)


class RCPSAddNormWrapper(nn.Module):
    """Equivariant add+norm, non-fused path (spec §4.3).

    ``S = X + R`` (fp32); returns ``[rms_w(S_f) | RC(rms_w(RC(S_r)))]`` in ``X``'s dtype, and with
    ``prenorm`` also the new residual ``S`` (dtype rules of :class:`RMSNorm`).
    """

    def __init__(self, submodule: RMSNorm):
        super().__init__()
        self.submodule = submodule

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        _check_two_strands(x, "RCPSAddNormWrapper")
        out, s = add_rms_norm(x, residual, self.submodule.weight, self.submodule.eps, rc=True)
        ct = s.dtype
        if not prenorm:
            return out
        res_dtype = residual.dtype if residual is not None else (ct if residual_in_fp32 else x.dtype)
        return out, s.to(res_dtype)


class RCPSMambaBlock(nn.Module):
    """PS block: Add → Norm → Mixer on ``[X_f | X_r]``, returning ``(mixer_out, residual)``.

    ``order="published"`` (the default whenever ``fused_add_norm``; what every published PS
    checkpoint was trained with) applies the natural block to the channel-swapped inputs
    (spec §4.4)::

        S = swap(X + R);   residual_out = S;   out = W(NormRC_w(S))

    ``order="natural"`` omits the swap. Both orders are exactly RC-equivariant but give different
    numbers; published weights reproduce only with "published".

    The module layout follows ``fused_add_norm`` so state_dict keys match upstream: fused →
    ``norm.weight``; non-fused → ``norm.submodule.weight``.
    """

    def __init__(self, d_model, mixer: RCPSWrapper, norm_eps=1e-5, fused_add_norm=True,
                 residual_in_fp32=False, order: str | None = None):
        super().__init__()
        self.mixer = mixer
        self.norm = RMSNorm(d_model, eps=norm_eps) if fused_add_norm else RCPSAddNormWrapper(RMSNorm(d_model, eps=norm_eps))
        self.fused_add_norm = fused_add_norm
        self.residual_in_fp32 = residual_in_fp32
        order = order or ("published" if fused_add_norm else "natural")
        if order not in ("published", "natural"):
            raise ValueError(f"order must be 'published' or 'natural'; got {order!r}")
        self.order = order

    @property
    def norm_weight(self) -> nn.Parameter:
        return self.norm.weight if self.fused_add_norm else self.norm.submodule.weight

    def forward(self, hidden_states, residual=None, inference_params=None):
        _check_two_strands(hidden_states, "RCPSMambaBlock")
        x = hidden_states
        eps = self.norm.eps if self.fused_add_norm else self.norm.submodule.eps
        # add + swap + NormRC in one Triton kernel on CUDA (strandwise.kernels.add_rms_norm)
        normed, s = add_rms_norm(x, residual, self.norm_weight, eps, rc=True, swap=self.order == "published")
        res_dtype = residual.dtype if residual is not None else (s.dtype if self.residual_in_fp32 else x.dtype)
        return self.mixer(normed), s.to(res_dtype)


class CaduceusBlock(nn.Module):
    """Ph block (upstream Mamba ``Block`` with an identity MLP): Add → RMSNorm → BiMamba."""

    def __init__(self, d_model, mixer: BiMambaWrapper, norm_eps=1e-5, residual_in_fp32=False):
        super().__init__()
        self.mixer = mixer
        self.norm = RMSNorm(d_model, eps=norm_eps)
        self.residual_in_fp32 = residual_in_fp32

    def forward(self, hidden_states, residual=None, inference_params=None):
        normed, residual = self.norm(hidden_states, residual, prenorm=True, residual_in_fp32=self.residual_in_fp32)
        return self.mixer(normed), residual


class RCPSLMHead(nn.Module):
    """Tied equivariant LM head: ``logits = X_f·Eᵀ + flip_C(X_r)·E[comp]ᵀ`` (spec §4.7).

    ``logits(rc x)[t, v] = logits(x)[L-1-t, comp(v)]``. The inner ``lm_head`` Linear's weight is
    tied to the embedding by :class:`CaduceusForMaskedLM`.
    """

    def __init__(self, complement_map, vocab_size: int, true_dim: int, **factory):
        super().__init__()
        self.register_buffer("complement_map", torch.as_tensor(list(complement_map), dtype=torch.int64))
        self.true_dim = true_dim
        self.lm_head = nn.Linear(true_dim, vocab_size, bias=False, **factory)

    @property
    def weight(self):
        return self.lm_head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _check_two_strands(x, "RCPSLMHead")
        if n != self.true_dim:
            raise ValueError(f"RCPSLMHead expects 2·{self.true_dim} channels; got {x.shape[-1]}")
        W = self.lm_head.weight
        return F.linear(x[..., :n], W) + F.linear(x[..., n:].flip(-1), W[self.complement_map])


# ================================================================================================
# 4. Backbone
# ================================================================================================


class CaduceusEmbeddings(nn.Module):
    """Holds ``word_embeddings``: :class:`RCPSEmbedding` for PS, ``nn.Embedding`` for Ph."""

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        if config.rcps:
            self.word_embeddings = RCPSEmbedding(config.vocab_size, config.d_model, config.full_complement_map())
        else:
            self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model)

    def forward(self, input_ids):
        if not isinstance(self.word_embeddings, RCPSEmbedding):
            V = self.word_embeddings.num_embeddings
            if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
                raise ValueError(f"token ids must lie in [0, {V}); got [{int(input_ids.min())}, {int(input_ids.max())}]")
        return self.word_embeddings(input_ids)


def _init_weights(module, n_layer, initializer_range=0.02, rescale_prenorm_residual=True,
                  n_residuals_per_layer=1):
    """Upstream Mamba initialisation (spec §5.3)."""
    if isinstance(module, nn.Linear):
        if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual and isinstance(module, Mamba):
        # GPT-2 style: out_proj ~ kaiming_uniform(a=√5) / √(n_residuals·n_layer). Idempotent, so
        # a tied out_proj visited twice ends up the same.
        p = module.out_proj.weight
        with torch.no_grad():
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            p /= math.sqrt(n_residuals_per_layer * n_layer)


class CaduceusMixerModel(nn.Module):
    """Embeddings → ``layers`` → final norm ``norm_f`` (spec §4.6).

    ``forward(input_ids=None, inputs_embeds=None, output_hidden_states=False)`` returns
    ``(hidden (B, L, d or 2d), hidden_states list)``. ``hidden_states`` holds the tensor entering
    each layer, plus the final output in the fused path (n_layer + 1 entries).
    """

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        self.config = config
        self.fused_add_norm = config.fused_add_norm
        self.rcps = config.rcps
        self.residual_in_fp32 = config.residual_in_fp32
        self.embeddings = CaduceusEmbeddings(config)
        layers = []
        for i in range(config.n_layer):
            bi = BiMambaWrapper(
                config.d_model, bidirectional=config.bidirectional,
                bidirectional_strategy=config.bidirectional_strategy,
                bidirectional_weight_tie=config.bidirectional_weight_tie,
                layer_idx=i, **config.mamba_kwargs(),
            )
            if config.rcps:
                layers.append(RCPSMambaBlock(config.d_model, RCPSWrapper(bi), config.norm_epsilon,
                                             config.fused_add_norm, config.residual_in_fp32))
            else:
                layers.append(CaduceusBlock(config.d_model, bi, config.norm_epsilon, config.residual_in_fp32))
        self.layers = nn.ModuleList(layers)
        norm_f = RMSNorm(config.d_model, eps=config.norm_epsilon)
        self.norm_f = RCPSAddNormWrapper(norm_f) if (config.rcps and not config.fused_add_norm) else norm_f
        self.gradient_checkpointing = config.gradient_checkpointing
        self.gradient_checkpointing_stride = config.gradient_checkpointing_stride
        self.gradient_checkpointing_blocks = config.gradient_checkpointing_blocks

    def _run_layers(self, start, stop, hidden, residual, collect, checkpointed=False):
        hs = []
        # a checkpointed segment is recomputed in backward anyway: the Mamba mixers take their
        # plain path there instead of the fused inner function (which would recompute again)
        with fused_inner_suspended() if checkpointed else contextlib.nullcontext():
            for layer in self.layers[start:stop]:
                if collect:
                    hs.append(hidden)
                hidden, residual = layer(hidden, residual)
        return hidden, residual, tuple(hs)

    def cpu_chunk_size(self, L: int) -> int:
        """Sequences per chunk on the CPU (see :mod:`strandwise.models.cpu_chunks`): the Mamba's
        ``x`` and ``z`` (``L × 2·d_inner`` fp32 per sequence, twice for the RC strand of RCPS)
        stay under ``cpu_chunks.CPU_CHUNK_BYTES``. At 4 layers of PS-131k width, 8 × 1,024 bp, a CPU
        forward+backward took 20.6–22.1 s whole and 11.7–12.4 s in chunks of 2–4."""
        d_inner = int(self.config.mamba_kwargs().get("expand", 2)) * self.config.d_model
        per_seq = L * 2 * d_inner * 4 * (2 if self.rcps else 1)
        return cpu_chunks.chunk_size(per_seq)

    def forward(self, input_ids=None, inputs_embeds=None, output_hidden_states=False):
        x = input_ids if inputs_embeds is None else inputs_embeds
        if not isinstance(x, torch.Tensor) or x.ndim < 2:  # _forward_whole says what is wrong
            return self._forward_whole(input_ids, inputs_embeds, output_hidden_states)
        return cpu_chunks.run_chunked(
            self, lambda ids, emb: self._forward_whole(ids, emb, output_hidden_states),
            self.cpu_chunk_size(x.shape[1]), input_ids, inputs_embeds)

    def _forward_whole(self, input_ids=None, inputs_embeds=None, output_hidden_states=False):
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids (B, L) or inputs_embeds")
            if input_ids.ndim != 2:
                raise ValueError(f"input_ids must have shape (B, L); got {tuple(input_ids.shape)}")
            hidden = self.embeddings(input_ids)
        else:
            want = 2 * self.config.d_model if self.rcps else self.config.d_model
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != want:
                raise ValueError(f"inputs_embeds must have shape (B, L, {want}); got {tuple(inputs_embeds.shape)}")
            hidden = inputs_embeds
        residual = None
        all_hidden = []
        n = len(self.layers)
        stride = self.gradient_checkpointing_stride
        use_ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        # Blocks [0, n_ckpt) are recomputed in segments of ``stride``; the rest keep activations.
        n_ckpt = 0
        if use_ckpt:
            k = self.gradient_checkpointing_blocks
            n_ckpt = n if k is None else min(k, n)
        for start in range(0, n_ckpt, max(stride, 1)):
            hidden, residual, hs = checkpoint(
                self._run_layers, start, min(start + max(stride, 1), n_ckpt), hidden, residual,
                output_hidden_states, True, use_reentrant=False,
            )
            all_hidden.extend(hs)
        if n_ckpt < n:
            hidden, residual, hs = self._run_layers(n_ckpt, n, hidden, residual, output_hidden_states)
            all_hidden.extend(hs)
        # Final norm: NormRC(h + r) for PS (no swap here), rms(h + r) for Ph.
        if self.rcps:
            w = self.norm_f.weight if self.fused_add_norm else self.norm_f.submodule.weight
            eps = self.norm_f.eps if self.fused_add_norm else self.norm_f.submodule.eps
            out = add_rms_norm(hidden, residual, w, eps, rc=True)[0]
        else:
            out = self.norm_f(hidden, residual, prenorm=False)
        if output_hidden_states and self.fused_add_norm:
            all_hidden.append(out)
        return out, all_hidden


# ------------------------------------------------------------------------------- outputs

class _Output:
    """Small structured output: attribute access, ``out[0]``-style indexing, ``to_tuple()``."""

    def to_tuple(self):
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, i):
        if isinstance(i, str):
            return getattr(self, i)
        return self.to_tuple()[i]


@dataclass
class CaduceusOutput(_Output):
    last_hidden_state: torch.Tensor
    hidden_states: tuple | None = None


@dataclass
class MaskedLMOutput(_Output):
    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple | None = None
    n_valid: torch.Tensor | None = None


@dataclass
class SequenceClassifierOutput(_Output):
    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple | None = None


# ================================================================================================
# 6 (used by the models below). Checkpoints on local directories
# ================================================================================================


class CaduceusCheckpointError(ValueError):
    """A checkpoint directory/file that does not match the model (missing/unexpected keys, ...)."""


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def alias_map(module: nn.Module) -> dict[str, str]:
    """``{alias key: canonical key}`` for tensors that appear under several state_dict keys.

    The canonical key is the first in state_dict order (what HF safetensors saving keeps).
    """
    seen: dict[int, str] = {}
    aliases = {}
    for k, v in module.state_dict(keep_vars=True).items():
        ident = id(v)
        if ident in seen:
            aliases[k] = seen[ident]
        else:
            seen[ident] = k
    return aliases


def _resolve_dir(path) -> str:
    p = os.fspath(path)
    if not os.path.exists(p):
        if _HUB_ID.match(p):
            name = p.split("/")[-1]
            raise FileNotFoundError(
                f"{p!r} looks like a Hugging Face hub id, but there is no local directory with "
                f"that name. strandwise never downloads at run time. Download it once, e.g. "
                f"`huggingface-cli download {p} --local-dir ./{name}` (or "
                f"`git clone https://huggingface.co/{p}`), then pass the directory './{name}'."
            )
        raise FileNotFoundError(f"checkpoint directory {p!r} does not exist")
    if not os.path.isdir(p):
        raise NotADirectoryError(f"{p!r} is not a directory; pass a checkpoint directory holding config.json")
    return p


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]  # Lightning checkpoint
    if not isinstance(sd, dict):
        raise CaduceusCheckpointError(f"{path}: expected a state_dict, got {type(sd).__name__}")
    return sd


def _key_diff_message(missing, unexpected, path) -> str:
    lines = [f"checkpoint {path} does not match the model:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:20]) + (" ..." if len(unexpected) > 20 else ""))
    return "\n".join(lines)


class _PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for the Caduceus models (spec §3.5)."""

    #: file-key prefixes that this model ignores (e.g. an MLM head when loading a bare backbone).
    _ignore_file_prefixes: tuple[str, ...] = ()
    #: model-key prefixes that may be absent from the file (a freshly initialised task head).
    _new_head_prefixes: tuple[str, ...] = ()
    #: prefix the published files put in front of this model's keys (stripped on load).
    _file_prefix: str = ""

    def save_pretrained(self, directory, safe_serialization: bool = True) -> None:
        """Write ``config.json`` and ``model.safetensors`` (aliases removed, as the hub files) or,
        with ``safe_serialization=False``, ``pytorch_model.bin`` (every key, aliases sharing storage).
        Files are written atomically.
        """
        os.makedirs(directory, exist_ok=True)
        cfg = self.config.to_dict()
        cfg.setdefault("architectures", [type(self).__name__])
        cfg.setdefault("model_type", "caduceus")
        atomic_write_text(os.path.join(directory, "config.json"), json.dumps(cfg, indent=2) + "\n")
        sd = self.state_dict()
        if safe_serialization:
            from safetensors.torch import save_file

            aliases = alias_map(self)
            tensors = {k: v.detach().contiguous() for k, v in sd.items() if k not in aliases}
            with atomic_path(os.path.join(directory, "model.safetensors"), suffix=".safetensors") as tmp:
                save_file(tensors, tmp, metadata={"format": "pt"})
        else:
            atomic_torch_save(sd, os.path.join(directory, "pytorch_model.bin"))

    @classmethod
    def from_pretrained(cls, directory, config: CaduceusConfig | None = None, map_location="cpu", **model_kwargs):
        """Build from a local checkpoint directory (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``) with strict, alias-aware key matching.

        Raises
        ------
        FileNotFoundError
            Missing directory (a hub id gets download instructions) or missing files.
        CaduceusCheckpointError
            Missing or unexpected keys (all named), shape mismatches, complement maps that differ
            from the config.
        """
        d = _resolve_dir(directory)
        cfg_path = os.path.join(d, "config.json")
        if config is None:
            if not os.path.isfile(cfg_path):
                raise FileNotFoundError(f"{d}: config.json is missing (a Caduceus checkpoint directory needs config.json and one of {', '.join(_WEIGHT_FILES)})")
            config = CaduceusConfig.from_json(cfg_path)
        weights = next((os.path.join(d, f) for f in _WEIGHT_FILES if os.path.isfile(os.path.join(d, f))), None)
        if weights is None:
            raise FileNotFoundError(f"{d}: no weights file; expected one of {', '.join(_WEIGHT_FILES)}")
        model = cls(config, **model_kwargs)
        model.load_checkpoint_state(_read_weights(weights), source=weights)
        return model.to(map_location) if map_location is not None else model

    def load_checkpoint_state(self, file_sd: dict[str, torch.Tensor], source: str = "<state_dict>") -> None:
        """Strict alias-aware load of a hub-style state_dict into this model (spec §3.5 contract)."""
        model_sd = self.state_dict(keep_vars=True)
        aliases = alias_map(self)
        canonical = [k for k in model_sd if k not in aliases]
        # Lightning prefix, then this model's prefix relative to the published MLM layout.
        if file_sd and all(k.startswith("model.") for k in file_sd):
            file_sd = {k[len("model."):]: v for k, v in file_sd.items()}
        if self._file_prefix and not any(k in model_sd for k in file_sd):
            strip = self._file_prefix
            file_sd = {(k[len(strip):] if k.startswith(strip) else k): v for k, v in file_sd.items()}
        file_sd = {k: v for k, v in file_sd.items() if not k.startswith(self._ignore_file_prefixes) or k in model_sd}
        unexpected = [k for k in file_sd if k not in model_sd]
        missing = [k for k in canonical if k not in file_sd
                   and not any(a in file_sd for a, c in aliases.items() if c == k)
                   and not k.startswith(self._new_head_prefixes)]
        if missing or unexpected:
            raise CaduceusCheckpointError(_key_diff_message(missing, unexpected, source))
        for k, v in file_sd.items():
            if tuple(v.shape) != tuple(model_sd[k].shape):
                raise CaduceusCheckpointError(
                    f"{source}: {k} has shape {tuple(v.shape)} in the file but {tuple(model_sd[k].shape)} in the model"
                )
            if k in aliases and aliases[k] in file_sd and not torch.equal(v, file_sd[aliases[k]]):
                raise CaduceusCheckpointError(f"{source}: tied tensors {k} and {aliases[k]} differ in the file")
        with torch.no_grad():
            for k, v in file_sd.items():
                target = model_sd[aliases.get(k, k)]
                if k.endswith("complement_map"):
                    if not torch.equal(v.to(torch.int64).cpu(), target.cpu()):
                        raise CaduceusCheckpointError(
                            f"{source}: {k} = {v.tolist()} differs from the config's complement map {target.tolist()}"
                        )
                    continue
                target.copy_(v.to(target.dtype))
        for a, c in aliases.items():  # ties must still hold
            assert model_sd[a].data_ptr() == model_sd[c].data_ptr(), f"tie {a} -> {c} broken"


# ================================================================================================
# 4 (cont.). The backbone model
# ================================================================================================


class Caduceus(_PretrainedMixin, nn.Module):
    """Backbone: attribute ``backbone`` (:class:`CaduceusMixerModel`).

    Pads ``config.vocab_size`` up to ``pad_vocab_size_multiple`` (and the complement map with
    identity entries), then initialises as upstream (spec §5.3).

    ``forward(input_ids (B, L) int64, inputs_embeds=None, output_hidden_states=False,
    return_dict=True)`` → :class:`CaduceusOutput` with ``last_hidden_state`` of shape ``(B, L, d)``
    (Ph) or ``(B, L, 2d)`` (PS, ``[X_f | X_r]``); ``return_dict=False`` gives the tuple.
    """

    _ignore_file_prefixes = ("lm_head.",)
    _file_prefix = "caduceus."

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        config.pad_vocab()
        self.config = config
        self.backbone = CaduceusMixerModel(config)
        init = dict(PUBLISHED_INITIALIZER_CFG if config.initializer_cfg is None else config.initializer_cfg)
        self.backbone.apply(lambda m: _init_weights(m, config.n_layer, **init))

    def forward(self, input_ids=None, inputs_embeds=None, output_hidden_states=False, return_dict=True):
        out, hs = self.backbone(input_ids, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states)
        res = CaduceusOutput(out, tuple(hs) if output_hidden_states else None)
        return res if return_dict else res.to_tuple()


# ================================================================================================
# 5. Heads
# ================================================================================================


def guarded_cross_entropy(logits, labels, ignore_index=DEFAULT_PAD_TOKEN_ID, weights=None):
    """Mean CE over non-ignored targets, ``Σ ce / max(n_valid, 1)`` (0 with no valid target).

    Parameters
    ----------
    logits : (..., V); labels : (...) int64; weights : (...) float, optional
        With weights: ``Σ ce·w / Σ w`` over valid targets (weights at ignored targets are zeroed).

    Returns
    -------
    loss : scalar tensor, n_valid : scalar int64 tensor
    """
    V = logits.shape[-1]
    lf, yf = logits.reshape(-1, V).float(), labels.reshape(-1)
    valid = yf != ignore_index
    ce = F.cross_entropy(lf, yf.clamp(0, V - 1), reduction="none") * valid
    n_valid = valid.sum()
    if weights is None:
        return ce.sum() / n_valid.clamp(min=1), n_valid
    w = weights.reshape(-1).to(ce.dtype) * valid
    return (ce * w).sum() / w.sum().clamp(min=torch.finfo(ce.dtype).tiny), n_valid


class CaduceusForMaskedLM(_PretrainedMixin, nn.Module):
    """``caduceus`` (:class:`Caduceus`) + ``lm_head`` tied to the embedding; fp32 logits (B, L, V).

    ``forward(input_ids, labels=None, loss_weights=None, inputs_embeds=None,
    output_hidden_states=False, return_dict=True)``. The loss ignores ``config.ignore_index`` (4)
    and is 0 (not NaN) for a batch without valid targets; ``n_valid`` reports how many counted.
    """

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        self.caduceus = Caduceus(config)
        self.config = self.caduceus.config
        emb = self.caduceus.backbone.embeddings.word_embeddings
        if config.rcps:
            self.lm_head = RCPSLMHead(config.full_complement_map(), config.vocab_size, config.d_model)
            self.lm_head.lm_head.weight = emb.embedding.weight
        else:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
            self.lm_head.weight = emb.weight

    def forward(self, input_ids=None, labels=None, loss_weights=None, inputs_embeds=None,
                output_hidden_states=False, return_dict=True):
        out = self.caduceus(input_ids, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states)
        logits = self.lm_head(out.last_hidden_state).float()
        loss = n_valid = None
        if labels is not None:
            loss, n_valid = guarded_cross_entropy(logits, labels, self.config.ignore_index, loss_weights)
        res = MaskedLMOutput(loss, logits, out.hidden_states, n_valid)
        return res if return_dict else res.to_tuple()


def rc_half(h: torch.Tensor, aligned: bool = True) -> torch.Tensor:
    """The RC half of a PS output ``(B, L, 2d)`` as ``d`` forward-strand features.

    ``aligned=True``: ``flip_C(X_r)``, position-aligned with the input (spec §4.8).
    ``aligned=False``: ``flip_{L,C}(X_r)`` = ``X_f(rc x)``, in rc coordinates (upstream parity).
    """
    n = _check_two_strands(h, "rc_half")
    x_r = h[..., n:].flip(-1)
    return x_r if aligned else x_r.flip(-2)


def collapse_strands(h: torch.Tensor) -> torch.Tensor:
    """Upstream collapse ``c(x) = (X_f + flip_{L,C}(X_r)) / 2``; ``c(rc x) = c(x)`` position-wise."""
    n = _check_two_strands(h, "collapse_strands")
    return (h[..., :n] + rc(h[..., n:])) / 2


def strand_features(h: torch.Tensor) -> torch.Tensor:
    """Per-position strand-symmetric features ``g(x)[t] = (X_f[t] + flip_C(X_r[t])) / 2``."""
    n = _check_two_strands(h, "strand_features")
    return (h[..., :n] + h[..., n:].flip(-1)) / 2


def pool_hidden(h: torch.Tensor, mask: torch.Tensor | None = None, mode: str = "mean") -> torch.Tensor:
    """Pool ``(B, L, d)`` over L → ``(B, d)``.

    Parameters
    ----------
    mask : (B, L) bool/int, optional
        1 for real tokens, 0 for padding. None = all positions.
    mode : {"mean", "mean_all", "max", "first", "last"}
        "mean" is the masked mean (padding excluded); "mean_all" averages over every position,
        padding included (upstream); "first"/"last" take the first/last real token.
    """
    B, L, _ = h.shape
    if mask is None or mode == "mean_all":
        m = torch.ones(B, L, dtype=torch.bool, device=h.device)
    else:
        if tuple(mask.shape) != (B, L):
            raise ValueError(f"mask must have shape {(B, L)}; got {tuple(mask.shape)}")
        m = mask.bool()
    if mode in ("mean", "mean_all"):
        mf = m.to(h.dtype)[..., None]
        return (h * mf).sum(1) / mf.sum(1).clamp(min=1)
    if mode == "max":
        return h.masked_fill(~m[..., None], float("-inf")).amax(1)
    pos = torch.arange(L, device=h.device).expand(B, L)
    if mode == "first":
        idx = torch.where(m, pos, torch.full_like(pos, L)).amin(1).clamp(max=L - 1)
    elif mode == "last":
        idx = torch.where(m, pos, torch.full_like(pos, -1)).amax(1).clamp(min=0)
    else:
        raise ValueError(f"pooling mode must be mean, mean_all, max, first or last; got {mode!r}")
    return h[torch.arange(B, device=h.device), idx]


def _two_strands(h: torch.Tensor):
    """(fwd, rc-aligned) features from ``(B, L, 2d)`` PS output or ``(B, L, d, 2)`` (aligned)."""
    if h.ndim == 4 and h.shape[-1] == 2:
        return h[..., 0], h[..., 1]
    if h.ndim == 3:
        n = _check_two_strands(h, "strand pooling")
        return h[..., :n], rc_half(h, aligned=True)
    raise ValueError(f"expected (B, L, 2d) or (B, L, d, 2); got {tuple(h.shape)}")


def strand_invariant_pool(h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, d]``: mean over L of both strands, averaged; equal for ``x`` and ``rc(x)``.

    ``h`` is a PS output ``(B, L, 2d)`` or a stacked ``(B, L, d, 2)`` with the second slice aligned
    to forward coordinates (``DNAEmbeddingModelCaduceus(aligned=True)``).
    """
    f, r = _two_strands(h)
    return (pool_hidden(f, mask) + pool_hidden(r, mask)) / 2


def strand_invariant_pool_concat(h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 2d]``: ``[strand-averaged mean pool | strand-max max pool]``; RC-invariant."""
    f, r = _two_strands(h)
    mean = (pool_hidden(f, mask) + pool_hidden(r, mask)) / 2
    mx = torch.maximum(pool_hidden(f, mask, "max"), pool_hidden(r, mask, "max"))
    return torch.cat([mean, mx], dim=-1)


class CaduceusForSequenceClassification(_PretrainedMixin, nn.Module):
    """Backbone + ``score = Linear(d, num_labels, bias=False)`` (N(0, 0.02)).

    PS: both strands are pooled (RC half aligned, split at ``d``), scored by the shared ``score``,
    and the logits averaged. Ph: with ``conjoin`` the model also runs on ``rc(ids)`` and averages.

    Parameters
    ----------
    config : CaduceusConfig
    num_labels : int
    pooling : {"mean", "mean_all", "max", "first", "last"}
        "mean" (default) excludes padding (``attention_mask``, else ids != pad).
    conjoin : bool
        Ph only: post-hoc conjoining over both strands.
    """

    _new_head_prefixes = ("score.",)
    _ignore_file_prefixes = ("lm_head.",)

    def __init__(self, config: CaduceusConfig, num_labels: int = 2, pooling: str = "mean", conjoin: bool = False):
        super().__init__()
        self.caduceus = Caduceus(config)
        self.config = self.caduceus.config
        self.num_labels, self.pooling, self.conjoin = int(num_labels), pooling, bool(conjoin)
        self.score = nn.Linear(config.d_model, self.num_labels, bias=False)
        nn.init.normal_(self.score.weight, std=0.02)

    def forward(self, input_ids, attention_mask=None, labels=None, return_dict=True):
        mask = attention_mask if attention_mask is not None else (input_ids != self.config.ignore_index)
        h = self.caduceus(input_ids).last_hidden_state
        if self.config.rcps:
            strands = [h[..., : self.config.d_model], rc_half(h, aligned=True)]
            masks = [mask, mask]
        elif self.conjoin:
            comp = torch.as_tensor(self.config.full_complement_map(), device=input_ids.device)
            h_rc = self.caduceus(comp[input_ids.flip(-1)]).last_hidden_state
            strands, masks = [h, h_rc], [mask, mask.flip(-1)]
        else:
            strands, masks = [h], [mask]
        logits = torch.stack([self.score(pool_hidden(s, m, self.pooling)) for s, m in zip(strands, masks)]).mean(0)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        res = SequenceClassifierOutput(loss, logits)
        return res if return_dict else res.to_tuple()


class DNAEmbeddingModelCaduceus(_PretrainedMixin, nn.Module):
    """Downstream backbone wrapper; ``forward(input_ids) -> (hidden, None)``.

    * PS: ``[B, L, d, 2]`` = stack(X_f, rc half).
    * Ph with ``conjoin_train`` (or ``conjoin_test`` in eval): ``[B, L, d, 2]`` = stack(h(ids),
      h(rc ids)); ``input_ids`` may be ``(B, L, 2)`` [fwd, rc] or ``(B, L)`` (rc computed here).
    * Ph otherwise: ``[B, L, d]``.

    ``aligned=True`` (default) puts the second slice in forward coordinates (``flip_C(X_r)`` for PS,
    ``flip_L(h(rc ids))`` for Ph); ``aligned=False`` reproduces upstream's rc coordinates.
    """

    _ignore_file_prefixes = ("lm_head.",)

    def __init__(self, config: CaduceusConfig, conjoin_train: bool = False, conjoin_test: bool = False,
                 aligned: bool = True):
        super().__init__()
        self.caduceus = Caduceus(config)
        self.config = self.caduceus.config
        self.conjoin_train, self.conjoin_test, self.aligned = conjoin_train, conjoin_test, aligned
        self.d_output = config.d_model

    def forward(self, input_ids, state=None):
        if self.config.rcps:
            h = self.caduceus(input_ids).last_hidden_state
            return torch.stack([h[..., : self.config.d_model], rc_half(h, aligned=self.aligned)], dim=-1), None
        conjoin = self.conjoin_train or (self.conjoin_test and not self.training)
        if input_ids.ndim == 3:
            if input_ids.shape[-1] != 2:
                raise ValueError(f"(B, L, 2) ids expected for conjoined input; got {tuple(input_ids.shape)}")
            fwd_ids, rc_ids = input_ids[..., 0], input_ids[..., 1]
        else:
            fwd_ids = input_ids
            comp = torch.as_tensor(self.config.full_complement_map(), device=input_ids.device)
            rc_ids = comp[input_ids.flip(-1)]
        h = self.caduceus(fwd_ids).last_hidden_state
        if not conjoin:
            return h, None
        h_rc = self.caduceus(rc_ids).last_hidden_state
        return torch.stack([h, h_rc.flip(-2) if self.aligned else h_rc], dim=-1), None


class CaduceusProjector(nn.Module):
    """Linear(in→hidden) → GELU → Dropout → Linear(hidden→out) → LayerNorm(out); ``[B, in] → [B, out]``.

    Defaults 512 → 1024 → 512 (1,051,136 parameters). Feed it strand-invariant pooled features
    (:func:`strand_invariant_pool_concat` for d = 256) to get strand-invariant projections.
    """

    def __init__(self, input_dim: int = 512, hidden: int = 1024, output_dim: int = 512, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, output_dim), nn.LayerNorm(output_dim),
        )
        self.input_dim = input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"CaduceusProjector expects (..., {self.input_dim}); got {tuple(x.shape)}")
        return self.net(x)


def load_caduceus(directory, model_cls=CaduceusForMaskedLM, **kwargs):
    """Load a local Caduceus checkpoint directory into ``model_cls`` (default the MLM model)."""
    return model_cls.from_pretrained(directory, **kwargs)
