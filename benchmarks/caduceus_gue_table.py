"""Markdown table of test MCC / accuracy / AUROC from `caduceus_gue.py` run folders.

Usage: python benchmarks/caduceus_gue_table.py RUN_DIR [RUN_DIR ...]
"""

import json
import os
import sys

MODELS = [("cnn", "CNN baseline"), ("ph_scratch", "Caduceus-Ph, random init"), ("ph_yeast", "Caduceus-Ph, yeast-pretrained")]


def main(dirs):
    runs = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name, "metrics.json")
            if "__" in name and os.path.exists(p):
                task, model = name.split("__")
                runs[(task, model)] = json.load(open(p))
    tasks = sorted({t for t, _ in runs})
    print("| task | model | params | steps | train s | test MCC | test accuracy | test AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for t in tasks:
        for key, label in MODELS:
            m = runs.get((t, key))
            if m is None:
                continue
            te = m["test"]
            print(f"| {t} | {label} | {m['n_parameters']:,} | {m['steps']} | {m['train_seconds']:.0f} | "
                  f"{te['mcc']:.3f} | {te['accuracy']:.3f} | {te['auroc']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
