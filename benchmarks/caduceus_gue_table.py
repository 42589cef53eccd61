"""Markdown tables of test MCC / accuracy / AUROC from `caduceus_gue.py` run folders.

Usage: python benchmarks/caduceus_gue_table.py [--wide] RUN_DIR [RUN_DIR ...]

Default: one row per (task, model). ``--wide``: one row per task, test MCC (accuracy) per model.
"""

import json
import os
import sys

MODELS = [("cnn", "CNN baseline"), ("ph_scratch", "Caduceus-Ph, random init"), ("ph_yeast", "Caduceus-Ph, yeast-pretrained")]


def load(dirs):
    runs = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name, "metrics.json")
            if "__" in name and os.path.exists(p):
                task, model = name.split("__")
                runs[(task, model)] = json.load(open(p))
    return runs


def long_table(runs):
    print("| task | model | params | steps | train s | test MCC | test accuracy | test AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for t in sorted({t for t, _ in runs}):
        for key, label in MODELS:
            m = runs.get((t, key))
            if m is None:
                continue
            te = m["test"]
            print(f"| {t} | {label} | {m['n_parameters']:,} | {m['steps']} | {m['train_seconds']:.0f} | "
                  f"{te['mcc']:.3f} | {te['accuracy']:.3f} | {te['auroc']:.3f} |")


def wide_table(runs):
    present = [(k, label) for k, label in MODELS if any(m == k for _, m in runs)]
    print("| task | " + " | ".join(f"{label}: MCC (acc.)" for _, label in present) + " |")
    print("|---|" + "---|" * len(present))
    for t in sorted({t for t, _ in runs}):
        cells = []
        for k, _ in present:
            m = runs.get((t, k))
            cells.append("—" if m is None else f"{m['test']['mcc']:.3f} ({m['test']['accuracy']:.3f})")
        best = max((float(c.split()[0]) for c in cells if c != "—"), default=None)
        cells = [f"**{c}**" if c != "—" and float(c.split()[0]) == best else c for c in cells]
        print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    wide = "--wide" in args
    dirs = [a for a in args if a != "--wide"]
    (wide_table if wide else long_table)(load(dirs))
