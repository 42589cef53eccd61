import os
import sys

import pytest
import torch

# Test modules import shared_data (beside this file) to find ../shared/data.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The compiled CPU selective scan's default ("auto") switches a process to it once 20 s went into
# eager scans, i.e. somewhere in the middle of this suite, which would make tests that compare
# paths at tight tolerances depend on their order. The suite runs the chunked reference unless a
# test asks otherwise (tests/kernels/test_selective_scan_cpu.py does); set the variable to 1 to run
# the whole suite with the compiled scan.
os.environ.setdefault("STRANDWISE_CPU_SCAN_COMPILE", "0")


def _has_cuda_triton() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _has_cuda_triton():
        return
    skip = pytest.mark.skip(reason="needs CUDA and Triton (gpu marker)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _small_threads():
    # CI has 2 cores; keep intra-op threads bounded so tests behave the same everywhere.
    prev = torch.get_num_threads()
    torch.set_num_threads(min(prev, 2))
    yield
    torch.set_num_threads(prev)


def pytest_report_header(config):
    from shared_data import SHARED_DATA
    found = "found" if os.path.isdir(SHARED_DATA) else "NOT found: tests that read it are skipped"
    return f"strandwise shared data: {SHARED_DATA} ({found})"
