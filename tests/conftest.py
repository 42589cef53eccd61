import os
import sys

import pytest
import torch

# Test modules import shared_data (beside this file) to find ../shared/data.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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
