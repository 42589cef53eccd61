"""Attribution: in-silico saturation mutagenesis and DeepLIFT/SHAP (spec §7.2).

Both take a wrapped model (:mod:`strandwise.interpret.wrappers`) that maps ``X (N, 4, L)`` to
``(N, T)`` scores and return attributions of shape ``(N, 4, W)`` over an attribution window.

DeepLIFT/SHAP runs through tangermeme's ``deep_lift_shap`` with dinucleotide-shuffled references.
Tangermeme has rules for GELU (rescale), softmax and bilinear products but none for Cherimoya's fused
depthwise conv + per-example normalisation, so :func:`conv_norm_deeplift_rule` is registered for
:class:`~strandwise.kernels.conv_norm.FusedDilatedConvNorm`:

1. recompute the (linear) dilated conv ``y = conv(x)`` of the example and of its reference from
   the cached module input;
2. apply the exact DeepLIFT multiplier of an affine-free normalisation over the whole ``(L, C)``
   plane (mean-centring, then ``a·v`` with ``v = (σ² + ε)^(-1/2)``, ``ε = 1e-3``): with
   ``a``/``a'`` the centred conv outputs of example/reference, ``v̄ = (v + v')/2`` and
   ``ρ = Δv/Δσ² = −v²v'²/(v + v')``, the multiplier applied to the upstream gradient ``g`` is
   ``m = v̄·(g − mean g) + ρ·(a + a')·Σ(g·(a + a'))/(2M)``;
3. push ``m`` back through the conv (a linear map, so its multiplier is its transpose: the same
   three taps in reverse order).

Every step's multiplier is exact (the product ``a·v`` by the midpoint rule, ``σ²`` is a sum of
squares ``Σ(a + a')·Δa/M``), so attributions sum to ``f(X) − f(reference)`` for each reference up
to rounding; the tests check this completeness for the count and profile wrappers.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from strandwise.kernels.conv_norm import CONV_NORM_EPS, FusedDilatedConvNorm, _dilated_conv

__all__ = [
    "attribution_window",
    "saturation_mutagenesis",
    "conv_norm_deeplift_rule",
    "deep_lift_shap",
    "dinucleotide_shuffle",
    "attribute",
    "DEFAULT_ATTR_WINDOW",
    "DEFAULT_N_SHUFFLES",
]

#: Width of the central attribution window (spec §7.2).
DEFAULT_ATTR_WINDOW = 400
#: Dinucleotide-shuffled references per sequence (spec §7.2).
DEFAULT_N_SHUFFLES = 20


def _require(module: str, extra: str = "interpret"):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(
            f"this analysis needs {module!r}; install it with: pip install 'strandwise[{extra}]'"
        ) from None


def _check_onehot(X, name="X"):
    if not isinstance(X, torch.Tensor) or X.ndim != 3 or X.shape[1] != 4:
        shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
        raise ValueError(f"{name} must be one-hot DNA of shape (N, 4, L); got {shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no sequences")


def attribution_window(length: int, attr_window: int | None = DEFAULT_ATTR_WINDOW) -> tuple[int, int]:
    """The central window ``[start, end)``: ``start = L//2 − attr_window//2``, width ``attr_window``.

    ``attr_window=None`` means the whole sequence. Raises ``ValueError`` if it does not fit.
    """
    if attr_window is None:
        return 0, int(length)
    if isinstance(attr_window, bool) or not isinstance(attr_window, int) or attr_window < 1:
        raise ValueError(f"attr_window must be a positive int; got {attr_window!r}")
    if attr_window > length:
        raise ValueError(f"attr_window={attr_window} is wider than the sequences ({length} bp)")
    start = length // 2 - attr_window // 2
    return start, start + attr_window


def _model_device(model, device):
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _scores(model, X, X_ctl, target):
    y = model(X) if X_ctl is None else model(X, X_ctl)
    if y.ndim == 1:
        y = y[:, None]
    y = y.reshape(y.shape[0], -1)
    return y[:, target]


# ---------------------------------------------------------------------------------------- ISM
@torch.no_grad()
def saturation_mutagenesis(
    model: nn.Module,
    X: torch.Tensor,
    X_ctl: torch.Tensor | None = None,
    start: int = 0,
    end: int | None = None,
    target: int = 0,
    batch_size: int = 256,
    center: bool = True,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """In-silico saturation mutagenesis over ``[start, end)``, batched over all mutants.

    ``delta[n, b, p] = f(X_n with base b at p) − f(X_n)`` for every position ``p`` of the window and
    every base ``b`` (0 for the observed base), where ``f = model(X)[:, target]``. The model is run
    once per true single-base mutant (``3·W`` per sequence), in batches of ``batch_size`` mutants
    drawn across sequences, so the scores are exact (no linearisation, no receptive-field shortcut —
    Cherimoya's normalisation makes every output depend on every position).

    Parameters
    ----------
    model : nn.Module
        ``model(X[, X_ctl]) -> (N, T)`` (e.g. a :class:`LogCountWrapper`).
    X : torch.Tensor, shape (N, 4, L)
        One-hot sequences. Positions with no base (N) are mutated to every base.
    X_ctl : torch.Tensor, shape (N, K, L), optional
        Controls, repeated for each mutant of their sequence.
    start, end : int
        Window to mutate (``end=None``: to the end).
    target : int
        Output column of the model.
    batch_size : int
        Mutants per forward pass.
    center : bool
        Subtract the mean over the four bases at each position (the usual "hypothetical
        attribution" form of ISM; the observed base then scores ``−mean(delta)``).
    device : optional
        Default: the model's device.
    progress : bool

    Returns
    -------
    torch.Tensor, shape (N, 4, end − start), fp32 on CPU
    """
    _check_onehot(X)
    # Mutants are built and scored from CPU copies (batches move to ``device``), so X may live anywhere.
    X = X.cpu()
    X_ctl = None if X_ctl is None else X_ctl.cpu()
    N, _, L = X.shape
    end = L if end is None else end
    if not 0 <= start < end <= L:
        raise ValueError(f"need 0 <= start < end <= {L}; got start={start}, end={end}")
    device = _model_device(model, device)
    was_training = model.training
    model.eval()
    Xf = X.float()
    W = end - start
    ref = _scores(model, Xf.to(device), None if X_ctl is None else X_ctl.float().to(device), target)
    ref = ref.float().cpu()

    # Every (sequence, position, base) whose base differs from the observed one.
    obs = Xf[:, :, start:end]
    n_idx, b_idx, p_idx = torch.nonzero(obs == 0, as_tuple=True)
    delta = torch.zeros(N, 4, W)
    from tqdm.auto import tqdm

    for s in tqdm(range(0, len(n_idx), batch_size), disable=not progress, desc="ism", unit="batch"):
        nb, bb, pb = n_idx[s : s + batch_size], b_idx[s : s + batch_size], p_idx[s : s + batch_size]
        xm = Xf[nb].clone()
        rows = torch.arange(len(nb))
        xm[rows, :, start + pb] = 0.0
        xm[rows, bb, start + pb] = 1.0
        cm = None if X_ctl is None else X_ctl[nb].float().to(device)
        y = _scores(model, xm.to(device), cm, target).float().cpu()
        delta[nb, bb, pb] = y - ref[nb]
    if was_training:
        model.train()
    if center:
        delta = delta - delta.mean(dim=1, keepdim=True)
    return delta


# ----------------------------------------------------------------------------------- DeepLIFT
def _norm_multiplier(y: torch.Tensor, y_ref: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    """DeepLIFT multiplier of the affine-free (L, C)-plane normalisation, applied to ``g``.

    ``y``, ``y_ref``, ``g``: ``(B, L, C)`` in the compute dtype. Returns ``∂``-like multipliers
    at ``y`` with ``Σ m·(y − y_ref) = Σ g·(x̂ − x̂_ref)`` exactly.
    """
    dims = (1, 2)
    M = y.shape[1] * y.shape[2]
    a = y - y.mean(dim=dims, keepdim=True)
    a_ref = y_ref - y_ref.mean(dim=dims, keepdim=True)
    v = torch.rsqrt(a.pow(2).mean(dim=dims, keepdim=True) + eps)
    v_ref = torch.rsqrt(a_ref.pow(2).mean(dim=dims, keepdim=True) + eps)
    v_mid = 0.5 * (v + v_ref)
    a_sum = a + a_ref
    # Δv/Δ(σ²) in closed form (no cancellation when the two variances are close).
    rho = -(v * v_ref).pow(2) / (v + v_ref)
    h = v_mid * g + rho * a_sum * (g * a_sum).sum(dim=dims, keepdim=True) / (2 * M)
    # Mean-centring is linear: its multiplier projects out the mean.
    return h - h.mean(dim=dims, keepdim=True)


def conv_norm_deeplift_rule(module, grad_input, grad_output):
    """Tangermeme-style DeepLIFT rule for :class:`FusedDilatedConvNorm`.

    Called from a full backward hook with ``module.input`` holding the cached ``(2B, L, C)`` input
    (examples, then their references). Returns the replacement gradient for the input.
    """
    x_all = module.input
    ct = torch.float64 if x_all.dtype == torch.float64 else torch.float32
    w = module.conv_weight.detach().to(ct)
    d = module.dilation
    with torch.no_grad():
        y, y_ref = _dilated_conv(x_all.to(ct), w, d).chunk(2)
        g, g_ref = grad_output[0].to(ct).chunk(2)
        m = torch.cat([_norm_multiplier(y, y_ref, g, CONV_NORM_EPS),
                       _norm_multiplier(y, y_ref, g_ref, CONV_NORM_EPS)])
        # The conv is linear, so its multiplier is its transpose: the same 3-tap conv with the
        # taps reversed (dx[p] = w0·m[p+d] + w1·m[p] + w2·m[p−d]).
        dx = _dilated_conv(m, w.flip(0), d)
    return (dx.to(grad_input[0].dtype),)


conv_norm_deeplift_rule._reads = ("input",)


def dinucleotide_shuffle(X: torch.Tensor, n_shuffles: int = DEFAULT_N_SHUFFLES, random_state: int = 0):
    """Dinucleotide-preserving shuffles (tangermeme), shuffle ``k`` seeded ``random_state + k``.

    Returns
    -------
    torch.Tensor, shape (N, n_shuffles, 4, L)
    """
    ersatz = _require("tangermeme.ersatz")
    _check_onehot(X)
    seeds = [int(random_state) + k for k in range(n_shuffles)]
    out = [ersatz.dinucleotide_shuffle(X.float(), n=1, random_state=s)[:, 0] for s in seeds]
    return torch.stack(out, dim=1)


def deep_lift_shap(
    model: nn.Module,
    X: torch.Tensor,
    X_ctl: torch.Tensor | None = None,
    target: int = 0,
    n_shuffles: int = DEFAULT_N_SHUFFLES,
    references: torch.Tensor | None = None,
    random_state: int = 0,
    batch_size: int = 64,
    hypothetical: bool = True,
    return_references: bool = False,
    warning_threshold: float = 1e-3,
    device=None,
    progress: bool = False,
):
    """DeepLIFT/SHAP attributions with dinucleotide-shuffled references (tangermeme engine).

    Registers :func:`conv_norm_deeplift_rule` for the fused conv + norm and runs tangermeme's
    ``deep_lift_shap``; references for sequence ``i`` are its dinucleotide shuffles, shuffle ``k``
    seeded ``random_state + k``.

    Parameters
    ----------
    model : nn.Module
        A wrapper returning ``(N, T)`` (:class:`LogCountWrapper`, :class:`ProfileWrapper`).
    X : torch.Tensor, shape (N, 4, L)
        On any device (copied to the CPU; batches run on ``device``).
    X_ctl : torch.Tensor, shape (N, K, L), optional
        Controls (the same controls are used for the references).
    target : int
        Output column to explain.
    n_shuffles : int
    references : torch.Tensor, shape (N, R, 4, L), optional
        Explicit references (overrides the shuffles).
    random_state : int
    batch_size : int
        Example-reference pairs per forward pass. On the CPU it is capped at half a Cherimoya's
        :meth:`~strandwise.models.Cherimoya.cpu_chunk_size` (each forward holds the pairs' inputs
        and their references): the attributions are the same, and the CPU path is 2–3× faster on
        batches that fit its chunk (tangermeme's hooks keep the model from chunking itself).
    hypothetical : bool
        Return hypothetical attributions (all four bases); multiply by ``X`` for contributions.
    return_references : bool
        Also return the references ``(N, R, 4, L)``.
    warning_threshold : float
        Convergence deltas above this raise a ``RuntimeWarning`` (tangermeme).
    device : optional
        Default: the model's device (CUDA when the model is there).
    progress : bool

    Returns
    -------
    attributions : torch.Tensor, shape (N, 4, L), on the CPU
    references : torch.Tensor, shape (N, R, 4, L), only with ``return_references``
    """
    dls = _require("tangermeme.deep_lift_shap")
    _check_onehot(X)
    # tangermeme shuffles on the CPU and moves each batch to ``device``: hand it CPU tensors.
    X = X.cpu()
    X_ctl = None if X_ctl is None else X_ctl.cpu()
    references = None if references is None else references.cpu()
    device = _model_device(model, device)
    ops = {FusedDilatedConvNorm: conv_norm_deeplift_rule}
    args = None if X_ctl is None else (X_ctl.float(),)
    if references is None:
        references = dinucleotide_shuffle(X, n_shuffles, random_state)
    elif references.ndim != 4 or references.shape[0] != X.shape[0] or references.shape[2:] != X.shape[1:]:
        raise ValueError(
            f"references must have shape ({X.shape[0]}, R, 4, {X.shape[-1]}); got {tuple(references.shape)}"
        )
    dtype = next(model.parameters()).dtype
    batch_size = _cpu_pair_batch(model, batch_size, X.shape[-1], device)
    with warnings.catch_warnings():
        # tangermeme warns about its "treated as linear" heuristic only when a rule is missing;
        # keep its convergence warnings visible.
        out = dls.deep_lift_shap(
            model, X.to(dtype), args=args, target=target, batch_size=batch_size,
            references=references.to(dtype), hypothetical=hypothetical,
            warning_threshold=warning_threshold, additional_nonlinear_ops=ops,
            device=device, verbose=progress, random_state=random_state,
        )
    out = out if isinstance(out, torch.Tensor) else out.attributions
    attr = out.to(torch.promote_types(dtype, torch.float32))  # float32, or float64 for a float64 model
    if return_references:
        return attr, references
    return attr


def _cpu_pair_batch(model, batch_size: int, L: int, device) -> int:
    """``batch_size`` capped on the CPU so ``2 × batch`` rows fit the Cherimoya's CPU chunk."""
    from strandwise.models.cherimoya import Cherimoya

    if torch.device(device).type != "cpu":
        return batch_size
    for m in model.modules():
        if isinstance(m, Cherimoya):
            return max(1, min(int(batch_size), m.cpu_chunk_size(L) // 2))
    return batch_size


# ------------------------------------------------------------------------------ entry point
_OUTPUTS = ("logcounts", "counts", "profile")
_ALGORITHMS = ("deep_lift_shap", "saturation_mutagenesis")


def attribute(
    model: nn.Module,
    X: torch.Tensor,
    X_ctl: torch.Tensor | None = None,
    algorithm: str = "deep_lift_shap",
    output: str = "logcounts",
    group: int = 0,
    attr_window: int | None = DEFAULT_ATTR_WINDOW,
    n_shuffles: int = DEFAULT_N_SHUFFLES,
    batch_size: int = 64,
    random_state: int = 0,
    device=None,
    progress: bool = False,
):
    """Attribute a Cherimoya's counts or profile over the central window (upstream ``attribute``).

    Parameters
    ----------
    model : Cherimoya
    X : torch.Tensor, shape (N, 4, L)
    X_ctl : torch.Tensor, shape (N, K, L), optional
    algorithm : {"deep_lift_shap", "saturation_mutagenesis"}
    output : {"logcounts", "profile"}
        ``"counts"`` is accepted as a deprecated alias of ``"logcounts"``.
    group : int
        Signal group to explain.
    attr_window : int or None
        Width of the central window (400); ``None`` = whole input.
    n_shuffles, batch_size, random_state, device, progress
        As in :func:`deep_lift_shap` / :func:`saturation_mutagenesis`.

    Returns
    -------
    ohe : torch.Tensor, shape (N, 4, W), float32
        The one-hot sequence over the window.
    attr : torch.Tensor, shape (N, 4, W), float32
        Hypothetical attributions over the window (multiply by ``ohe`` for contributions).
    """
    from strandwise.interpret.wrappers import ControlWrapper, LogCountWrapper, ProfileWrapper

    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}; got {algorithm!r}")
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of ('logcounts', 'profile'); got {output!r}")
    if output == "counts":
        warnings.warn("output='counts' is deprecated; use 'logcounts'", DeprecationWarning, stacklevel=2)
        output = "logcounts"
    _check_onehot(X)
    base = ControlWrapper(model)
    wrapped = LogCountWrapper(base, group) if output == "logcounts" else ProfileWrapper(base, group)
    start, end = attribution_window(X.shape[-1], attr_window)
    if algorithm == "saturation_mutagenesis":
        attr = saturation_mutagenesis(wrapped, X, X_ctl, start=start, end=end, batch_size=batch_size,
                                      device=device, progress=progress)
    else:
        full = deep_lift_shap(wrapped, X, X_ctl, n_shuffles=n_shuffles, random_state=random_state,
                              batch_size=batch_size, device=device, progress=progress)
        attr = full[:, :, start:end]
    return X[:, :, start:end].float().cpu(), attr.cpu()
