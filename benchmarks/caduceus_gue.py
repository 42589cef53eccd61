"""Fine-tune Caduceus models and the CNN baseline on GUE tasks with `strandwise finetune`.

Usage: python benchmarks/caduceus_gue.py OUT_DIR MODEL [MODEL ...] [options]

MODEL is ``cnn``, ``ph_scratch`` or ``ph_yeast=<pretrained model dir>``. Each run writes its own
folder (config, metrics.json, history.tsv) and is skipped when its metrics.json exists, so an
interrupted sweep continues where it stopped. ``--summary`` (default ``OUT_DIR/summary.json``)
collects test MCC/accuracy; give each concurrent worker its own summary file.

Defaults are the small CPU settings of docs/caduceus_training.md (d_model 64, 2 layers, 2 epochs,
batch 64, training sets capped at 4,000 sequences, the four tasks below). The GPU sweep uses
``--tasks all --max-train 0 --epochs 10 --d-model 128 --n-layer 4 --batch-size 256``.
Environment (older interface, still read): GUE_TASKS, GUE_EPOCHS.
"""

import argparse
import json
import os
import time

import torch

from strandwise.io.atomic import atomic_write_text

HERE = os.path.dirname(os.path.abspath(__file__))
GUE = os.path.join(HERE, "..", "..", "shared", "data", "gue_subset")
TASKS = ["prom/prom_core_tata", "mouse/2", "mouse/3", "tf/2"]


def all_tasks(gue):
    out = []
    for group in sorted(os.listdir(gue)):
        g = os.path.join(gue, group)
        if os.path.isdir(g):
            out += [f"{group}/{t}" for t in sorted(os.listdir(g)) if os.path.exists(os.path.join(g, t, "train.csv"))]
    return out


def config(task, model, out, args):
    t = os.path.abspath(os.path.join(args.gue_dir, task))
    data = {"train": f"{t}/train.csv", "valid": f"{t}/dev.csv", "test": f"{t}/test.csv"}
    if args.max_train:
        data["max_train"] = args.max_train
    name = f"{task.replace('/', '_')}__{model.split('=')[0]}"
    if model == "cnn":
        m, tr = {"kind": "cnn"}, {"max_epochs": 10, "batch_size": 64, "monitor": "mcc", "optim": {"lr": 1e-3}}
    else:
        m = {"variant": "ph", "d_model": args.d_model, "n_layer": args.n_layer}
        if model.startswith("ph_yeast="):
            m = {"pretrained": os.path.abspath(model.split("=", 1)[1])}
        tr = {"max_epochs": args.epochs, "batch_size": args.batch_size, "monitor": "mcc"}
    return name, {"name": name, "output_dir": os.path.join(out, name), "data": data, "model": m, "train": tr}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("models", nargs="+")
    p.add_argument("--gue-dir", default=GUE)
    p.add_argument("--tasks", default=os.environ.get("GUE_TASKS", ",".join(TASKS)),
                   help="comma-separated task folders (group/task), or 'all'")
    p.add_argument("--epochs", type=int, default=int(os.environ.get("GUE_EPOCHS", 2)), help="Caduceus epochs")
    p.add_argument("--max-train", type=int, default=4000, help="cap on training sequences (0 = all)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--summary", help="summary JSON (default OUT/summary.json)")
    args = p.parse_args(argv)

    from strandwise.cli.caduceus_config import FinetuneConfig, load_command_config
    from strandwise.cli.finetune import run_finetune

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    summary_path = args.summary or os.path.join(args.out, "summary.json")
    tasks = all_tasks(args.gue_dir) if args.tasks == "all" else args.tasks.split(",")
    for model in args.models:
        for task in tasks:
            name, raw = config(task, model, args.out, args)
            if os.path.exists(os.path.join(args.out, name, "metrics.json")):
                continue
            t0 = time.time()
            res = run_finetune(load_command_config(FinetuneConfig, raw), quiet=True)
            summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
            summary[name] = {"task": task, "model": model.split("=")[0], "wall_s": time.time() - t0,
                             "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                             "steps": res.metrics["steps"], "n_parameters": res.metrics["n_parameters"],
                             "best_epoch": res.best_epoch, "test": res.metrics.get("test"),
                             "valid": res.metrics.get("valid")}
            atomic_write_text(summary_path, json.dumps(summary, indent=2))
            print(name, summary[name]["test"], flush=True)


if __name__ == "__main__":
    main()
