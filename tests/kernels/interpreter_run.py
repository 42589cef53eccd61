"""Run a test script in a fresh Python under ``TRITON_INTERPRET=1`` (the Triton kernels on CPU).

The interpreter must be switched on before Triton is imported, hence a subprocess. The script
gets the test directory (``{testdir}``) so it can import the test module's helpers, and must print
``INTERPRETER-OK`` when it finishes.

Also :func:`assert_first_order_only`, used by those scripts and by the CPU/GPU tests alike.
"""

import os
import subprocess
import sys

import pytest
import torch


def assert_first_order_only(out, x) -> None:
    """A gradient of ``out`` w.r.t. ``x`` taken with ``create_graph=True`` cannot be differentiated
    again: it raises PyTorch's ``once_differentiable`` error (no silently missing second-order
    term). The upstream gradient requires grad, as in a real double backward."""
    gout = torch.randn(out.shape, dtype=out.dtype, device=out.device).requires_grad_()
    gx, = torch.autograd.grad(out, [x], gout, create_graph=True)
    try:
        gx.float().sum().backward()
    except RuntimeError as exc:
        assert "once_differentiable" in str(exc), exc
        return
    raise AssertionError("a second derivative did not raise")


def run_under_interpreter(script: str, testfile: str, timeout: int = 600) -> None:
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        # The gpu-marked tests cover the compiled kernels there; Triton 3.6's interpreter also
        # trips over scalar conversion with the newer NumPy of the GPU image.
        pytest.skip("CUDA present: the gpu-marked tests run the compiled kernels")
    testdir = os.path.dirname(os.path.abspath(testfile))
    root = os.path.dirname(os.path.dirname(testdir))
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", script.format(testdir=testdir)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and "INTERPRETER-OK" in proc.stdout, proc.stdout + proc.stderr
