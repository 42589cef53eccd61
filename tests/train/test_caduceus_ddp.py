"""Caduceus fine-tuning with 2 CPU processes (gloo DDP) equals 1 process (same global batch)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

GUE = shared("gue_subset")


def _run(tmp_path, devices):
    t = os.path.join(GUE, "mouse", "3")
    cfg = {"name": "d", "output_dir": str(tmp_path / f"d{devices}"),
           "data": {"train": f"{t}/train.csv", "valid": f"{t}/dev.csv", "max_train": 64, "max_eval": 32},
           "model": {"variant": "ps", "d_model": 8, "n_layer": 1, "d_state": 4},
           "train": {"max_epochs": 2, "batch_size": 16, "accelerator": "cpu"}}
    p = tmp_path / f"c{devices}.json"
    p.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "strandwise", "finetune", str(p), "--quiet", "--devices", str(devices)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    out = tmp_path / f"d{devices}"
    return load_file(str(out / "classifier" / "classifier.safetensors")), json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_process_ddp_finetune_matches_single_process(tmp_path):
    s1, m1 = _run(tmp_path, 1)
    s2, m2 = _run(tmp_path, 2)
    assert m1["steps"] == m2["steps"] == 8
    for k, v in s1.items():
        torch.testing.assert_close(s2[k], v, atol=2e-4, rtol=2e-3, msg=k)
    assert abs(m1["valid"]["auroc"] - m2["valid"]["auroc"]) < 0.01
