import pytest


@pytest.fixture
def cnt():
    """The Triton conv-norm module with autotuning off (one heuristic config per kernel) for the
    test, restored after: shape sweeps would otherwise spend their time compiling every config."""
    from strandwise.kernels import conv_norm_triton

    prev = conv_norm_triton.autotune_enabled()
    conv_norm_triton.set_autotune(False)
    yield conv_norm_triton
    conv_norm_triton.set_autotune(prev)
