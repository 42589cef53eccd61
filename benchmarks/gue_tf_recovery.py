"""Does a classifier trained on a GUE TF task learn that task's motif? (issue #8)

Two independent answers, compared:

1. ``enrich`` — ground truth without a model: scan positives and negatives of each task's training
   set with JASPAR CORE vertebrate matrices (log-odds max-score scan, hit = per-window background
   p ≤ 1e-4, both strands) and rank motifs by one-sided Fisher enrichment.
2. ``recover`` — train a classifier on one task with ``strandwise finetune`` (CNN baseline by
   default), attribute test positives (DeepLIFT/SHAP with dinucleotide-shuffled references through
   :func:`strandwise.interpret.attribute_classifier`), call seqlets, annotate them by tomtom
   against the same JASPAR matrices, optionally run modisco-lite, and report whether the top
   seqlet groups / patterns match the top enriched motif.

Usage::

    python benchmarks/gue_tf_recovery.py enrich --tasks 0 1 2 3 4 --out OUT
    python benchmarks/gue_tf_recovery.py recover --task 2 --out OUT [--model cnn|caduceus]

Writes ``OUT/enrichment_tf{k}.tsv``, ``OUT/enrichment_summary.tsv`` and, for ``recover``,
``OUT/tf{k}_{model}/`` with ``seqlet_motifs.tsv``, ``groups.tsv``, ``modisco_patterns.tsv``,
``summary.json`` and logos.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gue_subset", "tf")


def _onehot(seqs):
    from strandwise.io.sequence import one_hot_encode

    return torch.stack([one_hot_encode(s, dtype=torch.float32) for s in seqs])


def _read(task, split, data=DATA):
    from strandwise.data.labelled import read_labelled_table

    return read_labelled_table(os.path.join(data, str(task), f"{split}.csv"))


def _tsv(path, records, cols=None, fmt="{:.4g}"):
    from strandwise.io.atomic import atomic_write_text

    cols = cols or list(records[0])
    lines = ["\t".join(cols)]
    for r in records:
        lines.append("\t".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols))
    atomic_write_text(path, "\n".join(lines) + "\n")


def enrich(args):
    from strandwise.interpret import jaspar_motifs
    from strandwise.interpret.enrichment import motif_enrichment

    os.makedirs(args.out, exist_ok=True)
    motifs = jaspar_motifs(tax_group="vertebrates", release=args.release)
    summary = []
    for task in args.tasks:
        t0 = time.time()
        d = _read(task, "train", args.data)
        rng = np.random.RandomState(0)
        pos = np.flatnonzero(d.labels == 1)
        neg = np.flatnonzero(d.labels == 0)
        if args.max_per_class:
            pos = rng.choice(pos, min(len(pos), args.max_per_class), replace=False)
            neg = rng.choice(neg, min(len(neg), args.max_per_class), replace=False)
        recs = motif_enrichment(_onehot([d.sequences[i] for i in pos]), _onehot([d.sequences[i] for i in neg]),
                                motifs, p_hit=args.p_hit)
        _tsv(os.path.join(args.out, f"enrichment_tf{task}.tsv"), recs[: args.keep])
        top = recs[0]
        ctcf = next(i for i, r in enumerate(recs) if r["motif"].split()[1] == "CTCF")
        summary.append({"task": f"tf/{task}", "n_pos": len(pos), "n_neg": len(neg), "top_motif": top["motif"],
                        "frac_pos": top["frac_pos"], "frac_neg": top["frac_neg"],
                        "odds_ratio": top["odds_ratio"], "p_value": top["p_value"],
                        "top5": ", ".join(r["motif"].split()[1] for r in recs[:5]),
                        "ctcf_rank": ctcf + 1, "ctcf_frac_pos": recs[ctcf]["frac_pos"],
                        "ctcf_frac_neg": recs[ctcf]["frac_neg"], "seconds": round(time.time() - t0, 1)})
        print(json.dumps(summary[-1]), flush=True)
    _tsv(os.path.join(args.out, "enrichment_summary.tsv"), summary)


def _train(args, run_dir):
    """``strandwise finetune`` on the task (subprocess, one thread); returns metrics.json."""
    import subprocess

    t = os.path.join(args.data, str(args.task))
    data = {"train": f"{t}/train.csv", "valid": f"{t}/dev.csv", "test": f"{t}/test.csv"}
    if args.max_train:
        data["max_train"] = args.max_train
    if args.model == "cnn":
        model, train = {"kind": "cnn"}, {"max_epochs": args.epochs, "batch_size": 64, "monitor": "mcc",
                                         "optim": {"lr": 1e-3}}
    else:
        model = {"variant": "ph", "d_model": 64, "n_layer": 2}
        train = {"max_epochs": args.epochs, "batch_size": 64, "monitor": "mcc"}
    cfg = {"name": f"tf{args.task}_{args.model}", "output_dir": os.path.join(run_dir, "finetune"),
           "data": data, "model": model, "train": train}
    path = os.path.join(run_dir, "finetune.json")
    with open(path, "w") as fh:
        json.dump(cfg, fh, indent=1)
    metrics = os.path.join(run_dir, "finetune", "metrics.json")
    if not os.path.exists(metrics):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        subprocess.run([sys.executable, "-m", "strandwise.cli.main", "finetune", path, "--quiet"], check=True, env=env)
    with open(metrics) as fh:
        return json.load(fh)


def _tf_classes(release):
    """``{"MA0099.4 FOS::JUN": "Basic leucine zipper factors (bZIP)"}`` from JASPAR's annotation."""
    import pyjaspar

    recs = pyjaspar.jaspardb(release=release).fetch_motifs(collection="CORE", tax_group=["vertebrates"])
    return {f"{m.matrix_id} {m.name}": "; ".join(dict.fromkeys(m.tf_class)) or "NA" for m in recs}


def _class_counts(annotated, classes):
    from collections import Counter

    return Counter(classes.get(a["motif"], "NA") for a in annotated)


def recover(args):
    from strandwise.interpret import (annotate_seqlets, attribute_classifier, call_seqlets, jaspar_motifs,
                                      motif_aligned_cwm, motif_seqlet_counts, run_modisco, tomtom_matches,
                                      trim_motif)
    from strandwise.interpret.plots import plot_motif_match
    from strandwise.train.caduceus_module import load_classifier

    run_dir = os.path.join(args.out, f"tf{args.task}_{args.model}")
    os.makedirs(run_dir, exist_ok=True)
    timing = {}
    t0 = time.time()
    metrics = _train(args, run_dir)
    timing["finetune_wall_s"] = round(time.time() - t0, 1)
    model, meta = load_classifier(os.path.join(run_dir, "finetune", "classifier"))

    # ground truth for this task: enrichment table written by `enrich` (recomputed if missing)
    etab = os.path.join(args.out, f"enrichment_tf{args.task}.tsv")
    if not os.path.exists(etab):
        enrich(argparse.Namespace(out=args.out, data=args.data, release=args.release, p_hit=args.p_hit,
                                  tasks=[args.task], max_per_class=0, keep=50))
    with open(etab) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in fh]
    truth = [r["motif"] for r in rows[: args.truth_top]]

    pos = []
    for split in ("test", "dev") if args.include_dev else ("test",):  # both held out from training
        d = _read(args.task, split, args.data)
        pos += [s for s, y in zip(d.sequences, d.labels) if y == 1]
    pos = pos[: args.n_attr]
    X = _onehot(pos)
    t0 = time.time()
    attr = attribute_classifier(model, X, target=1, algorithm="deep_lift_shap", n_shuffles=args.n_shuffles,
                                batch_size=256)
    timing["deeplift_s"] = round(time.time() - t0, 1)
    np.savez_compressed(os.path.join(run_dir, "attributions.npz"), ohe=X.numpy().astype(np.int8),
                        attr=attr.numpy())
    # ISM on a subset: agreement of the two attribution methods (observed-base contributions)
    t0 = time.time()
    n_ism = min(args.n_ism, len(pos))
    ism = attribute_classifier(model, X[:n_ism], target=1, algorithm="saturation_mutagenesis", batch_size=1024)
    timing["ism_s"] = round(time.time() - t0, 1)
    a = (attr[:n_ism] * X[:n_ism]).sum(1).flatten().numpy()
    b = (ism * X[:n_ism]).sum(1).flatten().numpy()
    ism_r = float(np.corrcoef(a, b)[0, 1])

    db = jaspar_motifs(tax_group="vertebrates", release=args.release)
    t0 = time.time()
    seqlets = call_seqlets(attr, X)
    ann = annotate_seqlets(seqlets, X, db, n_jobs=1)
    timing["seqlets_annotate_s"] = round(time.time() - t0, 1)
    counts = motif_seqlet_counts(ann)
    named = [a_ for a_ in ann if a_["motif"] != "NA"]
    in_truth = sum(a_["motif"] in truth for a_ in named)
    # the single top enriched motif: share of seqlets matching it (tomtom p <= 0.05) against random
    # windows of the same lengths in the same sequences
    top = truth[0]
    rng = np.random.RandomState(0)
    ctrl = [{"example_idx": r["example_idx"], "start": int(st), "end": int(st) + r["end"] - r["start"]}
            for r in seqlets for st in [rng.randint(0, X.shape[-1] - (r["end"] - r["start"]) + 1)]]
    hit_s = sum(a_["motif"] != "NA" for a_ in annotate_seqlets(seqlets, X, {top: db[top]}, n_jobs=1))
    hit_c = sum(a_["motif"] != "NA" for a_ in annotate_seqlets(ctrl, X, {top: db[top]}, n_jobs=1))
    # TF classes (JASPAR annotation) of the best matches: seqlets vs the random windows
    classes = _tf_classes(args.release)
    cs = _class_counts(ann, classes)
    cc = _class_counts(annotate_seqlets(ctrl, X, db, n_jobs=1), classes)
    ns, nc = max(1, len(ann)), max(1, len(ctrl))
    class_rows = [{"tf_class": k, "n_seqlets": cs[k], "frac_seqlets": cs[k] / ns, "n_random": cc.get(k, 0),
                   "frac_random": cc.get(k, 0) / nc} for k, _ in cs.most_common(10)]
    _tsv(os.path.join(run_dir, "seqlet_tf_classes.tsv"), class_rows)
    top_class = classes.get(top, "NA")
    _tsv(os.path.join(run_dir, "seqlet_motifs.tsv"),
         [dict(c, in_enrichment_top=c["motif"] in truth) for c in counts[: args.keep]])

    # groups: seqlets of the most frequent matches, CWM aligned on the motif, matched again
    groups, logos = [], []
    for c in [c for c in counts if c["motif"] != "NA"][: args.n_groups]:
        sel = [a_ for a_ in ann if a_["motif"] == c["motif"]]
        cwm, _ = motif_aligned_cwm(sel, X, attr, db[c["motif"]])
        s, e = trim_motif(cwm, 0.3, 1)
        m = tomtom_matches({c["motif"]: cwm[:, s:e]}, db, top_k=3, n_jobs=1)[0]
        groups.append({"group": c["motif"], "n_seqlets": c["n_seqlets"], "cwm_match0": m["match0"], "q0": m["q0"],
                       "cwm_match1": m["match1"], "cwm_match2": m["match2"],
                       "match0_in_enrichment_top": m["match0"] in truth})
        if len(logos) < 1:
            logos.append(plot_motif_match(cwm[:, s:e], db[m["match0"]], f"seqlet group {c['motif']} (aligned CWM)",
                                          m["match0"], m["p0"], path=os.path.join(run_dir, "top_group_logo.png")))
    if groups:
        _tsv(os.path.join(run_dir, "groups.tsv"), groups)

    patterns = []
    if args.modisco:
        t0 = time.time()
        res = run_modisco(X, attr, os.path.join(run_dir, "modisco"), report=False,
                          max_seqlets=args.modisco_max_seqlets)
        timing["modisco_s"] = round(time.time() - t0, 1)
        for p in res["patterns"]:
            s, e = trim_motif(p["cwm"], 0.3, 1)
            m = tomtom_matches({p["pattern"]: p["cwm"][:, s:e]}, db, top_k=3, n_jobs=1)[0]
            patterns.append({"pattern": p["pattern"], "n_seqlets": p["n_seqlets"], "match0": m["match0"],
                             "p0": m["p0"], "q0": m["q0"], "match1": m["match1"], "match2": m["match2"],
                             "match0_in_enrichment_top": m["match0"] in truth})
            if p["pattern"].startswith("pos") and len(logos) < 2:
                logos.append(plot_motif_match(p["cwm"][:, s:e], db[m["match0"]], f"MoDISco {p['pattern']} CWM",
                                              m["match0"], m["p0"], path=os.path.join(run_dir, "modisco_top_logo.png")))
        if patterns:
            _tsv(os.path.join(run_dir, "modisco_patterns.tsv"), patterns)

    summary = {
        "task": f"tf/{args.task}", "model": args.model, "torch_threads": args.threads,
        "test_metrics": metrics.get("test", metrics), "best_epoch": metrics.get("best_epoch"),
        "train_seconds": metrics.get("train_seconds"), "n_parameters": metrics.get("n_parameters"),
        "enrichment_top": truth, "n_attributed": len(pos), "n_shuffles": args.n_shuffles,
        "n_seqlets": len(seqlets), "n_seqlets_matched": len(named),
        "frac_matched_in_enrichment_top": in_truth / max(1, len(named)),
        "top_enriched_motif": top, "frac_seqlets_matching_top": hit_s / max(1, len(seqlets)),
        "frac_random_windows_matching_top": hit_c / max(1, len(ctrl)),
        "top_enriched_motif_class": top_class,
        "frac_seqlets_best_match_in_top_class": cs.get(top_class, 0) / ns,
        "frac_random_best_match_in_top_class": cc.get(top_class, 0) / nc,
        "top_seqlet_motifs": [c["motif"] for c in counts if c["motif"] != "NA"][:5],
        "ism_vs_deeplift_pearson": ism_r, "n_ism": n_ism, "groups": groups, "modisco": patterns,
        "timing": timing,
    }
    from strandwise.io.atomic import atomic_write_text

    atomic_write_text(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=1, default=float) + "\n")
    print(json.dumps({k: summary[k] for k in ("test_metrics", "n_seqlets", "frac_seqlets_matching_top",
                                              "frac_random_windows_matching_top", "top_enriched_motif_class",
                                              "frac_seqlets_best_match_in_top_class",
                                              "frac_random_best_match_in_top_class", "top_seqlet_motifs",
                                              "frac_matched_in_enrichment_top", "ism_vs_deeplift_pearson",
                                              "timing")}, default=float), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("enrich", help="JASPAR enrichment of positives vs negatives per task")
    e.add_argument("--tasks", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--max-per-class", type=int, default=0, help="subsample each class (0 = all)")
    e.add_argument("--keep", type=int, default=50, help="rows kept per task table")
    r = sub.add_parser("recover", help="train, attribute, seqlets, tomtom, MoDISco on one task")
    r.add_argument("--task", type=int, default=3)
    r.add_argument("--model", choices=("cnn", "caduceus"), default="cnn")
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--max-train", type=int, default=0, help="cap the training set (0 = all)")
    r.add_argument("--n-attr", type=int, default=1000, help="test positives attributed (at most)")
    r.add_argument("--no-dev", dest="include_dev", action="store_false",
                   help="attribute test positives only (default: test + dev positives, both held out)")
    r.add_argument("--n-shuffles", type=int, default=20)
    r.add_argument("--n-ism", type=int, default=100)
    r.add_argument("--truth-top", type=int, default=20, help="top enriched motifs taken as the ground truth set")
    r.add_argument("--n-groups", type=int, default=8)
    r.add_argument("--keep", type=int, default=30)
    r.add_argument("--modisco", action="store_true")
    r.add_argument("--modisco-max-seqlets", type=int, default=20000)
    for p in (e, r):
        p.add_argument("--out", required=True)
        p.add_argument("--data", default=DATA)
        p.add_argument("--release", default="JASPAR2024")
        p.add_argument("--p-hit", type=float, default=1e-4)
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"enrich": enrich, "recover": recover}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
