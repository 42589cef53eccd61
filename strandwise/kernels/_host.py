"""Host-side integer helpers for the kernel wrappers.

Triton 3.6's ``triton.cdiv`` and ``triton.next_power_of_2`` are ``ConstexprFunction`` objects
(usable inside kernels too); called from Python each costs ~2.7 µs of argument unwrapping on this
project's CI machine against ~0.03 µs for plain integer arithmetic. A selective-scan forward and
backward made ~25 such calls, a measurable part of the launch-bound wall time of small scans.
"""

from __future__ import annotations

import os

__all__ = ["cdiv", "next_pow2", "DirectLauncher", "DIRECT", "INTERPRETING", "AUTOTUNE_CACHE", "CAPPED_CONFIGS", "env_flag",
           "env_get"]


#: ``os.environ``'s own bytes-keyed store on POSIX (CPython keeps it current on every
#: ``os.environ`` assignment, ``putenv``-free deletion and pytest's ``monkeypatch``): a lookup there
#: costs ~0.1 µs against ~2.4 µs for ``os.environ.get``, which encodes the key and builds the
#: mapping view on each call; four such reads were ~10 µs of a small scan's host time.
_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None
if not isinstance(_ENV_DATA, dict):
    _ENV_DATA = None


def env_get(name: str):
    """``os.environ.get(name)`` (``None`` when unset), cheaply: for switches read on every kernel
    call."""
    if _ENV_DATA is None:
        return os.environ.get(name)
    value = _ENV_DATA.get(name.encode())
    return None if value is None else os.fsdecode(value)


def env_int(name: str, default: int, lo: int, hi: int | None = None) -> int:
    """A whole number from the environment in ``[lo, hi]`` (``default`` when unset or blank).
    Other values raise, naming the variable, so a typo does not silently keep the default."""
    value = env_get(name)
    if value is None or not value.strip():
        return default
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or n < lo or (hi is not None and n > hi):
        span = f"{lo}-{hi}" if hi is not None else f"≥ {lo}"
        raise ValueError(f"{name} must be a whole number {span}; got {value!r}")
    return n


def env_flag(name: str, default):
    """A 0/1 switch from the environment as a bool (``default`` when unset, which may be ``None``
    for a caller with an automatic choice). Other values raise, so a typo does not silently keep
    the default."""
    value = env_get(name)
    if value is None:
        return default
    value = value.strip()
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1; got {value!r}")
    return value == "1"


#: Triton's interpreter mode (``TRITON_INTERPRET=1``). Triton fixes it when kernels are decorated,
#: i.e. at import, so it is read once here too (an environment lookup per call was a visible share
#: of a small scan's host time).
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: ``STRANDWISE_AUTOTUNE_CACHE`` (read at import; default ``1``): the autotuned kernels keep their
#: tuning results in Triton's disk cache (``TRITON_CACHE_DIR``, default ``~/.triton/cache``), keyed
#: by Triton version, GPU architecture, kernel source, tuning key and candidate configs, so a later
#: process skips the benchmarking of every shape it has seen (first epoch of the upstream-size
#: ``fit`` on an H100: 60 s fresh, 5.3 s with compiled kernels but tuning again, 1.3 s with the
#: picks cached; BENCHMARKS.md, Round 11). ``0`` tunes in every process.
AUTOTUNE_CACHE = env_flag("STRANDWISE_AUTOTUNE_CACHE", True)

#: ``STRANDWISE_CAPPED_CONFIGS`` (read at import; default ``1``): the Cheri MLP kernels' autotune
#: spaces also try tiles with registers capped per thread (8 warps at 128, 4 at 168;
#: :func:`strandwise.kernels.cheri_infer_triton.capped_configs`), and the host launches the
#: unmasked ``EVEN`` variant of the MLP kernel where every tile is full. On an H100 the autotuner
#: picks 64 rows, 4 warps at 168 registers for the bf16 inference pass (0.288 ms against 0.319 for
#: the best uncapped tile; whole block 0.350 ms, was 0.387; BENCHMARKS.md Round 13). ``0`` restores
#: the uncapped spaces and the masked tiles.
CAPPED_CONFIGS = env_flag("STRANDWISE_CAPPED_CONFIGS", True)


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ``a`` by positive ``b``."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """Smallest power of two ≥ ``n`` (1 for ``n ≤ 1``), as ``triton.next_power_of_2``."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


class DirectLauncher:
    """Launch a Triton kernel through its dispatch once per key, then directly.

    ``launch(kernel, grid, tensors, ints, meta, key)`` runs ``kernel[grid](*tensors, *ints, **meta)``
    (``kernel`` a ``JITFunction`` or an ``Autotuner`` over one) the first time it sees ``key``,
    and returns the constexprs it ran with (``meta`` plus the autotuner's pick). It keeps the
    compiled kernel it returns and the constexpr tail, and from then on calls the compiled
    kernel's launcher itself, with the grid of each call (evaluated on the cached constexprs when
    it is a function: the grid may depend on sizes that are not in the key, such as the batch). That skips the autotuner's per-call argument dicts and
    the JIT's argument specialisation (~35-50 µs per launch on an H200 host, against ~13 µs direct:
    ``benchmarks/probe_scan_host.py``).

    Correctness rests on ``key`` capturing everything Triton specialises on: the caller puts in it
    ``ints`` exactly (Triton specialises integers on ``== 1`` and divisibility by 16), the
    tensors' dtypes, the constexpr values and the device. Every call checks that all data pointers
    are 16-byte aligned (what Triton assumes of a pointer it specialised): a call with any
    unaligned one takes the ordinary dispatch and is not cached. A registered launch hook
    (``triton.knobs.runtime.launch_enter_hook`` / ``launch_exit_hook``, e.g. a profiler) also
    turns the direct path off. Without hooks the direct launch passes none to the launcher; Triton
    3.6's own path passes its (empty) hook chains and builds launch metadata on every call.
    """

    def __init__(self, max_entries: int = 4096):
        self._cache: dict = {}
        self._max = max_entries
        self.enabled = True
        self.hits = 0  # direct launches so far (tests, probes)

    def clear(self) -> None:
        self._cache.clear()

    def run(self, kernel, grid, tensors, scalars, meta, dtypes=None):
        """``kernel[grid](*tensors, *scalars, **meta)`` keyed by the kernel, ``scalars`` (ints and
        floats, exactly), the tensors' dtypes (``dtypes`` when the caller knows which of them can
        vary, else read from every tensor) and ``meta``'s values; plain dispatch when Triton
        interprets (CPU). Returns the constexprs the launch used."""
        if INTERPRETING:
            kernel[grid](*tensors, *scalars, **meta)
            return _chosen(kernel, meta)
        if dtypes is None:
            dtypes = tuple(t.dtype for t in tensors)
        return self.launch(kernel, grid, tensors, scalars, meta,
                           (id(kernel), scalars, dtypes, tuple(meta.values())))

    def call(self, kernel, grid, args, meta):
        """:meth:`run` for an argument list in the kernel's order: tensors first, then scalars."""
        i = 0
        while i < len(args) and hasattr(args[i], "data_ptr"):
            i += 1
        if any(hasattr(a, "data_ptr") or a is None for a in args[i:]):
            # a tensor (or None) after the scalars: not a layout the direct path knows; dispatch
            kernel[grid](*args, **meta)
            return _chosen(kernel, meta)
        return self.run(kernel, grid, tuple(args[:i]), tuple(args[i:]), meta)

    def launch(self, kernel, grid, tensors, ints, meta, key):
        """Launch on the current CUDA device and stream (as Triton does); ``key`` must be hashable."""
        dev = _current_device()
        key = (dev, key)
        aligned = True
        for t in tensors:
            if t.data_ptr() & 15:
                aligned = False
                break
        hit = self._cache.get(key) if (self.enabled and aligned) else None
        if hit is not None:
            ck, tail, chosen = hit
            rt = _knobs().runtime
            if _no_hooks(rt.launch_enter_hook) and _no_hooks(rt.launch_exit_hook):
                # this call's grid, never a cached one: it may depend on sizes the key leaves out
                # (the wrappers key on widths, lengths and strides, not on the batch)
                g = _grid3(grid, chosen)
                ck.run(g[0], g[1], g[2], _raw_stream(dev), ck.function, ck.packed_metadata, None,
                       None, None, *tensors, *ints, *tail)
                self.hits += 1
                return chosen
        ck = kernel[grid](*tensors, *ints, **meta)
        chosen = _chosen(kernel, meta)
        if not (aligned and self.enabled) or ck is None or hasattr(ck, "result"):
            return chosen
        params = _params_of(kernel)[len(tensors) + len(ints):]
        if not all(p.is_constexpr and (p.name in chosen or p.has_default) for p in params):
            return chosen  # a runtime argument passed by keyword, or an unknown constexpr
        tail = tuple(chosen[p.name] if p.name in chosen else p.default for p in params)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (ck, tail, chosen)
        return chosen


def _grid3(grid, chosen) -> tuple:
    """The launch grid (a tuple, or a function of the constexprs) padded to three axes."""
    g = grid(chosen) if callable(grid) else grid
    return tuple(g) + (1,) * (3 - len(g))


def _chosen(kernel, meta) -> dict:
    """``meta`` plus the autotuner's pick (after a launch through an ``Autotuner``)."""
    best = getattr(kernel, "best_config", None)
    return dict(meta, **best.kwargs) if best is not None else dict(meta)


def _params_of(kernel):
    """The ``JITFunction.params`` under an ``Autotuner`` / ``Heuristics`` chain (or of the
    ``JITFunction`` itself: its own ``.fn`` is the undecorated Python function)."""
    while not hasattr(kernel, "params"):
        kernel = kernel.fn
    return kernel.params


def _no_hooks(h) -> bool:
    # Triton 3.6: a HookChain (empty unless something registered a hook); older: None or a callable
    return h is None or (hasattr(h, "calls") and not h.calls)


def _current_device() -> int:
    import torch

    return torch.cuda.current_device()


def _raw_stream(dev: int) -> int:
    import torch

    return torch._C._cuda_getCurrentRawStream(dev)  # what Triton's own launch path uses


def _knobs():
    import triton.knobs as knobs

    return knobs


#: The launcher every kernel wrapper shares (keys start with the kernel's identity).
DIRECT = DirectLauncher()
