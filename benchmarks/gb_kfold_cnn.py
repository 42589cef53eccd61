"""5-fold CV of the CNN baseline inside the Genomic Benchmarks test-only splits (docs k-fold protocol).

Usage: python benchmarks/gb_kfold_cnn.py OUT_DIR
"""

import json
import os
import sys

import numpy as np
import torch

from strandwise.io.atomic import atomic_write_text

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
SETS = {"human_nontata_promoters": "gb_human_nontata_promoters_test/test.tsv",
        "drosophila_enhancers_stark": "gb_drosophila_enhancers_stark_test/test.csv"}


def main(out):
    from strandwise.cli.caduceus_config import FinetuneConfig, load_command_config
    from strandwise.cli.finetune import run_finetune

    torch.set_num_threads(1)
    summary = {}
    for name, path in SETS.items():
        accs, mccs = [], []
        for fold in range(5):
            raw = {"name": f"{name}_f{fold}", "output_dir": os.path.join(out, f"{name}_f{fold}"),
                   "data": {"train": os.path.abspath(os.path.join(DATA, path)), "kfold": 5, "fold": fold, "fold_seed": 1},
                   "model": {"kind": "cnn"}, "train": {"max_epochs": 10, "batch_size": 64, "optim": {"lr": 1e-3}}}
            res = run_finetune(load_command_config(FinetuneConfig, raw), quiet=True)
            accs.append(res.metrics["test"]["accuracy"])
            mccs.append(res.metrics["test"]["mcc"])
        summary[name] = {"accuracy": accs, "mcc": mccs, "accuracy_mean": float(np.mean(accs)),
                         "accuracy_range": float(np.ptp(accs)), "mcc_mean": float(np.mean(mccs))}
        print(name, summary[name], flush=True)
    atomic_write_text(os.path.join(out, "summary.json"), json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
