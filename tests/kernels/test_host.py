"""Host-side helpers of the kernel wrappers (strandwise.kernels._host), without a GPU."""

import types

import pytest

from strandwise.kernels import _host
from strandwise.kernels._host import DirectLauncher, cdiv, next_pow2


def test_env_get_follows_os_environ(monkeypatch):
    import os

    name = "STRANDWISE_TEST_ENV_GET_Ünï"
    monkeypatch.delenv(name, raising=False)
    assert _host.env_get(name) is None
    monkeypatch.setenv(name, "1")
    assert _host.env_get(name) == "1" == os.environ[name]
    os.environ[name] = " 0 é"
    assert _host.env_get(name) == " 0 é"
    with pytest.raises(ValueError, match="must be 0 or 1"):
        _host.env_flag(name, True)
    del os.environ[name]
    assert _host.env_get(name) is None and _host.env_flag(name, True) is True


def test_integer_helpers():
    assert [cdiv(a, 4) for a in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert [next_pow2(n) for n in (0, 1, 2, 3, 17, 64)] == [1, 1, 2, 4, 32, 64]


class _Param:
    def __init__(self, name, constexpr=False, default=None):
        self.name, self.is_constexpr = name, constexpr
        self.has_default, self.default = default is not None, default


class _Compiled:
    function, packed_metadata = "fn-handle", "meta"

    def __init__(self, log):
        self.log = log

    def run(self, gx, gy, gz, stream, function, packed, launch_meta, enter, exit_, *args):
        self.log.append(("direct", (gx, gy, gz), stream, args))


class _Jit:
    """A JITFunction stand-in: params (x_ptr, n, BLOCK, FLAG=7), ``kernel[grid](...)`` dispatch."""

    def __init__(self):
        self.params = [_Param("x_ptr"), _Param("n"), _Param("BLOCK", True), _Param("FLAG", True, 7)]
        self.log = []
        self.fn = lambda: None  # a JITFunction's own .fn is the plain Python function

    def __getitem__(self, grid):
        def runner(*args, **kw):
            g = grid(kw) if callable(grid) else grid
            self.log.append(("dispatch", tuple(g), args, kw))
            return _Compiled(self.log)
        return runner


class _Tuner:
    """An Autotuner stand-in over a _Jit: it picks BLOCK."""

    def __init__(self, jit):
        self.fn = jit
        self.best_config = types.SimpleNamespace(kwargs={"BLOCK": 64})

    def __getitem__(self, grid):
        def runner(*args, **kw):
            return self.fn[grid](*args, **kw, **self.best_config.kwargs)
        return runner


class _Ptr:
    dtype = "fp32"

    def __init__(self, p):
        self.p = p

    def data_ptr(self):
        return self.p


@pytest.fixture
def fake_cuda(monkeypatch):
    hooks = types.SimpleNamespace(runtime=types.SimpleNamespace(launch_enter_hook=None,
                                                                launch_exit_hook=None))
    monkeypatch.setattr(_host, "_current_device", lambda: 0)
    monkeypatch.setattr(_host, "_raw_stream", lambda dev: 1234)
    monkeypatch.setattr(_host, "_knobs", lambda: hooks)
    return hooks


@pytest.mark.parametrize("tuned", [False, True])
def test_direct_launch_after_first_dispatch(fake_cuda, tuned):
    jit = _Jit()
    kernel = _Tuner(jit) if tuned else jit
    dl = DirectLauncher()
    grid = (lambda m: (cdiv(100, m["BLOCK"]),)) if tuned else (4,)
    meta = {} if tuned else {"BLOCK": 32}
    x = _Ptr(4096)
    for _ in range(3):
        chosen = dl.launch(kernel, grid, (x,), (100,), meta, ("k", 100))
        assert chosen["BLOCK"] == (64 if tuned else 32)
    kinds = [e[0] for e in jit.log]
    assert kinds == ["dispatch", "direct", "direct"] and dl.hits == 2
    # direct launches: the grid padded to 3-D, the current stream, then the runtime arguments and
    # the constexpr tail in parameter order, the default for the one not given
    _, g, stream, args = jit.log[1]
    assert g == ((2, 1, 1) if tuned else (4, 1, 1)) and stream == 1234
    assert args == (x, 100, 64 if tuned else 32, 7)


def test_unaligned_pointer_never_uses_the_cache(fake_cuda):
    jit = _Jit()
    dl = DirectLauncher()
    dl.launch(jit, (1,), (_Ptr(4096),), (8,), {"BLOCK": 16}, "k")
    dl.launch(jit, (1,), (_Ptr(4098),), (8,), {"BLOCK": 16}, "k")  # same key, unaligned pointer
    dl.launch(jit, (1,), (_Ptr(4096),), (8,), {"BLOCK": 16}, "k")
    assert [e[0] for e in jit.log] == ["dispatch", "dispatch", "direct"]


def test_launch_hook_or_disabled_takes_the_dispatch(fake_cuda):
    jit = _Jit()
    dl = DirectLauncher()
    args = ((1,), (_Ptr(0),), (8,), {"BLOCK": 16}, "k")
    dl.launch(jit, *args)
    fake_cuda.runtime.launch_enter_hook = lambda meta: None  # a profiler is listening
    dl.launch(jit, *args)
    # Triton 3.6 keeps hook chains: empty means none registered
    fake_cuda.runtime.launch_enter_hook = types.SimpleNamespace(calls=[print])
    dl.launch(jit, *args)
    fake_cuda.runtime.launch_enter_hook = types.SimpleNamespace(calls=[])
    dl.enabled = False
    dl.launch(jit, *args)
    dl.enabled = True
    dl.launch(jit, *args)
    assert [e[0] for e in jit.log] == ["dispatch", "dispatch", "dispatch", "dispatch", "direct"]
    assert dl.hits == 1


def test_params_of_real_triton_kernels():
    pytest.importorskip("triton")
    from strandwise.kernels import selective_scan_triton as sst

    names = [p.name for p in _host._params_of(sst._fwd_kernel)]
    assert names == [p.name for p in _host._params_of(sst._fwd_kernel_tuned)]
    assert names[0] == "u_ptr" and names[-1] in ("TF", "BLOCK_D", "T", "NP")


@pytest.mark.parametrize("tuned", [False, True])
def test_direct_launch_uses_this_calls_grid(fake_cuda, tuned):
    # the grid may depend on values outside the key (the batch: the wrappers key on L, widths
    # and strides, not on the batch size); a cached launch must use the grid of its own call
    jit = _Jit()
    kernel = _Tuner(jit) if tuned else jit
    dl = DirectLauncher()
    x = _Ptr(4096)
    for batch in (4, 2, 7):
        grid = (lambda m, b=batch: (b, cdiv(100, m["BLOCK"]))) if tuned else (batch, 3)
        dl.launch(kernel, grid, (x,), (100,), {} if tuned else {"BLOCK": 32}, ("k", 100))
    grids = [e[1] for e in jit.log]
    blocks = 2 if tuned else 3
    assert [e[0] for e in jit.log] == ["dispatch", "direct", "direct"]
    assert grids == [(4, blocks), (2, blocks, 1), (7, blocks, 1)]


def test_call_splits_tensors_from_scalars(fake_cuda):
    # call(): tensors first, then scalars, as the Cheri kernels take them; a tensor after a
    # scalar is not a known layout and always takes the dispatch
    jit = _Jit()
    dl = DirectLauncher()
    x = _Ptr(4096)
    for _ in range(2):
        dl.call(jit, (1,), (x, 100), {"BLOCK": 16})
    assert [e[0] for e in jit.log] == ["dispatch", "direct"] and jit.log[1][3] == (x, 100, 16, 7)
    for _ in range(2):
        dl.call(jit, (1,), (100, x), {"BLOCK": 16})
    assert [e[0] for e in jit.log[2:]] == ["dispatch", "dispatch"]


def test_cheri_kernels_take_the_direct_path_layout():
    # DIRECT.call caches a kernel only if every parameter after its tensors and scalars is a
    # constexpr (otherwise it silently keeps dispatching): check the Cheri kernels' signatures
    pytest.importorskip("triton")
    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels import cheri_train_triton as ctt
    from strandwise.kernels import conv_norm_triton as cnt

    kernels = {  # kernel: (pointer arguments, scalar arguments) as the wrappers pass them
        cnt._fwd_stats_tuned: (3, 5), cnt._fwd_finalize_kernel: (3, 5),
        cnt._fwd_norm_tuned: (5, 3),
        cnt._bwd_stats_tuned: (6, 5), cnt._bwd_comb_tuned: (9, 5), cnt._bwd_main_tuned: (9, 5),
        cit.mlp_kernel_tuned: (10, 5), ctt.mlp_bwd_kernel_tuned: (8, 3),
    }
    for k, (nt, ns) in kernels.items():
        ps = _host._params_of(k)
        assert all(p.name.endswith("_ptr") for p in ps[:nt]), ps[:nt]
        assert not any(p.is_constexpr or p.name.endswith("_ptr") for p in ps[nt:nt + ns])
        assert ps[nt + ns:] and all(p.is_constexpr for p in ps[nt + ns:])


def test_smem_ladder_steps_down_only_for_fp32_operands():
    from strandwise.kernels.cheri_infer import smem_ladder

    meta = {"BLOCK_M": 64, "BLOCK_H": 64}
    assert list(smem_ladder(meta, 3, fp32_ops=False)) == [(meta, 3)]
    steps = list(smem_ladder(meta, 3, fp32_ops=True))
    assert steps[:2] == [(meta, 3), (meta, 2)]
    assert [(m["BLOCK_H"], n) for m, n in steps[2:]] == [(32, 2), (16, 2)]
    assert all(m["BLOCK_M"] == 64 for m, _ in steps)


def test_launch_first_fitting_skips_configs_over_shared_memory():
    pytest.importorskip("triton")
    from triton.runtime.errors import OutOfResources

    from strandwise.kernels.cheri_infer import launch_first_fitting

    tried = []

    def launch(meta, ns):
        tried.append((meta["BLOCK_H"], ns))
        if meta["BLOCK_H"] > 16:
            raise OutOfResources(300_000, 232_448, "shared memory")

    ladder = [({"BLOCK_H": 64}, 3), ({"BLOCK_H": 32}, 2), ({"BLOCK_H": 16}, 2), ({"BLOCK_H": 8}, 2)]
    launch_first_fitting(launch, ladder)
    assert tried == [(64, 3), (32, 2), (16, 2)]  # stops at the first that fits
    tried.clear()
    with pytest.raises(OutOfResources):  # none fits: the last error propagates
        launch_first_fitting(launch, ladder[:2])
    assert tried == [(64, 3), (32, 2)]
    with pytest.raises(ValueError):  # other errors are not swallowed
        launch_first_fitting(lambda m, n: (_ for _ in ()).throw(ValueError("x")), ladder)


def test_capped_configs_follow_the_switch_and_survive_pruning():
    pytest.importorskip("triton")
    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels import cheri_train_triton as ctt

    named = {"H": 256, "C": 128}
    for space in (cit.configs(), ctt.bwd_configs()):  # on by default; STRANDWISE_CAPPED_CONFIGS=0 drops them
        assert any(c.maxnreg for c in space) == _host.CAPPED_CONFIGS
    fwd = cit.prune(cit.configs() + cit.capped_fwd_configs(), named, BLOCK_C=128)
    bwd = ctt._prune(ctt.bwd_configs() + ctt.capped_bwd_configs(), named, BLOCK_C=128)
    tiles = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_H"], c.num_warps, c.maxnreg, c.num_stages) for c in fwd if c.maxnreg}
    assert tiles == {(64, 32, 4, 168, 3), (128, 32, 8, 128, 3)}  # the forward keeps what the H100 sweep supports
    capped = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_H"], c.num_warps, c.maxnreg) for c in bwd if c.maxnreg}
    assert capped == {(bm, bh, nw, reg) for bh in (32, 64) for bm, nw, reg in cit.CAPPED_TILES}
    # a small layer's widest chunk is 16: half of it is below the kernels' minimum and is dropped
    small = cit.prune(cit.configs() + cit.capped_configs(RELOAD_RES=1), {"H": 16, "C": 16}, BLOCK_C=16)
    assert all(c.kwargs["BLOCK_H"] == 16 for c in small)
