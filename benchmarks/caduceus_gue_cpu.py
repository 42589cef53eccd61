"""Fine-tune small Caduceus models and the CNN baseline on GUE tasks with `strandwise finetune`.

Usage: python benchmarks/caduceus_gue_cpu.py OUT_DIR MODEL [MODEL ...]
Environment: GUE_TASKS (comma-separated, default the four below), GUE_EPOCHS (Caduceus epochs, default 2).
MODEL is ``cnn``, ``ph_scratch`` or ``ph_yeast=<pretrained model dir>``. Each run writes its own
folder (config, metrics.json, history.tsv); ``OUT_DIR/summary.json`` collects test MCC/accuracy.
Settings are deliberately small (CPU): d_model 64, 2 layers, 2 epochs, batch 64, training sets
capped at 4,000 sequences (``MAX_TRAIN``).
"""

import json
import os
import sys
import time

import torch

GUE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gue_subset")
TASKS = ["prom/prom_core_tata", "mouse/2", "mouse/3", "tf/2"]
MAX_TRAIN = 4000


def config(task, model, out):
    t = os.path.abspath(os.path.join(GUE, task))
    data = {"train": f"{t}/train.csv", "valid": f"{t}/dev.csv", "test": f"{t}/test.csv", "max_train": MAX_TRAIN}
    name = f"{task.replace('/', '_')}__{model.split('=')[0]}"
    if model == "cnn":
        m, tr = {"kind": "cnn"}, {"max_epochs": 10, "batch_size": 64, "monitor": "mcc", "optim": {"lr": 1e-3}}
    else:
        m = {"variant": "ph", "d_model": 64, "n_layer": 2}
        if model.startswith("ph_yeast="):
            m = {"pretrained": os.path.abspath(model.split("=", 1)[1])}
        tr = {"max_epochs": int(os.environ.get("GUE_EPOCHS", 2)), "batch_size": 64, "monitor": "mcc"}
    return name, {"name": name, "output_dir": os.path.join(out, name), "data": data, "model": m, "train": tr}


def main(out, models):
    from strandwise.cli.caduceus_config import FinetuneConfig, load_command_config
    from strandwise.cli.finetune import run_finetune

    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    summary_path = os.path.join(out, "summary.json")
    for model in models:
        for task in os.environ.get("GUE_TASKS", ",".join(TASKS)).split(","):
            name, raw = config(task, model, out)
            if os.path.exists(os.path.join(out, name, "metrics.json")):
                continue
            t0 = time.time()
            res = run_finetune(load_command_config(FinetuneConfig, raw), quiet=True)
            summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
            summary[name] = {"task": task, "model": model.split("=")[0], "wall_s": time.time() - t0,
                             "steps": res.metrics["steps"], "n_parameters": res.metrics["n_parameters"],
                             "best_epoch": res.best_epoch, "test": res.metrics.get("test"),
                             "valid": res.metrics.get("valid")}
            json.dump(summary, open(summary_path, "w"), indent=2)
            print(name, summary[name]["test"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
