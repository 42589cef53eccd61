"""Triton's autotune results kept in its disk cache across processes (``STRANDWISE_AUTOTUNE_CACHE``, on by default).

GPU test: two fresh processes share one empty ``TRITON_CACHE_DIR``; the first tunes (Triton
prints each tuning under ``TRITON_PRINT_AUTOTUNING=1``), the second must find every result on
disk, tune nothing, and compute the same outputs.
"""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import torch
from strandwise import Cherimoya
torch.manual_seed(0)
m = Cherimoya(n_filters=32, n_layers=2, trimming=40, random_state=0).cuda()
X = torch.nn.functional.one_hot(torch.randint(0, 4, (8, 240)), 4).permute(0, 2, 1).float().cuda()
with torch.autocast("cuda", dtype=torch.bfloat16):
    p, c = m(X)
(p.float().sum() + c.float().sum()).backward()
m.eval()
with torch.no_grad():
    q, d = m(X)
g = sum(float(t.grad.double().abs().sum()) for t in m.parameters() if t.grad is not None)
print("CHECKSUM", repr(float(p.double().sum())), repr(float(q.double().sum())), repr(g))
"""


def _run(cache_dir):
    env = dict(os.environ, TRITON_CACHE_DIR=str(cache_dir), STRANDWISE_AUTOTUNE_CACHE="1",
               TRITON_PRINT_AUTOTUNING="1")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    checksum = [line for line in r.stdout.splitlines() if line.startswith("CHECKSUM")]
    return r.stdout.count("Triton autotuning for function"), checksum


@pytest.mark.gpu
def test_second_process_reuses_the_tuning_results(tmp_path):
    tuned_first, out_first = _run(tmp_path)
    assert tuned_first > 0
    assert any(f.endswith(".autotune.json") for _, _, fs in os.walk(tmp_path) for f in fs)
    tuned_second, out_second = _run(tmp_path)
    assert tuned_second == 0
    assert out_second == out_first
