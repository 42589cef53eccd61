"""Variant-effect-prediction (VEP) embeddings of Caduceus, and the SVM evaluation (spec §7).

Pipeline for each variant (VCF conventions: ``pos`` 1-based, ``ref`` starts at ``pos``):

1. Reference and alternate windows of ``L`` bp with the variant's first reference base at index
   ``L//2`` (:func:`strandwise.interpret.variants.build_variant_windows`); the reference allele is
   checked against the FASTA (mismatch → :class:`AlleleMismatchError` naming the variant, or a
   counted skip with ``on_ref_mismatch="skip"``). Variants whose window would cross a chromosome
   end are skipped and counted, never silently dropped.
2. Tokenised without special tokens; N stays 11 (not PAD).
3. Variant index ``idx = L//2`` when ref and alt differ there, else the **last** differing
   position (upstream's rule; −1 if none).
4. Both strands in forward coordinates: PS from one pass per allele (``X_f`` and ``flip_C(X_r)``),
   Ph from an extra pass on the reverse complement flipped back along L.
5. Window mean over the ``K = window + 1`` positions ``idx + o``, ``o = −window/2 … +window/2``,
   clamped to ``[0, L−1]`` (K = 1,537 for the paper's 1,536 bp).
6. ``concat_avg_ws = [mean_ref | mean_alt]`` (N, 2d) from the forward strand and
   ``rc_concat_avg_ws`` (N, 2d) from the reverse-complement strand.

A multi-allelic record (ALT ``A,T``) is scored once per allele: one output row each, and the
kept records carry the single allele (:func:`split_alleles`).

Our strands are both position-aligned, so unlike upstream's PS the RC window is centred on the
variant too (upstream's is one position off; spec §6.6).

Outputs per split: ``concat_avg_ws``, ``rc_concat_avg_ws``, ``chromosome`` (int; X → −1, Y → −2,
mitochondria → −3, other names → −4), ``labels`` (−1 when absent), ``distance_to_nearest_tss`` (NaN
when absent), ``tissue_embed`` (codes of a label encoder fitted on the test split's tissues, −1 when
unseen or absent), ``variant_index``.

:func:`evaluate_vep_svm` runs the §7 protocol (scikit-learn, ``pip install 'strandwise[vep]'``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from strandwise.interpret.variants import AlleleMismatchError, Variant, build_variant_windows

__all__ = [
    "VariantRecord",
    "read_variant_file",
    "split_alleles",
    "variant_index",
    "vep_window_indices",
    "vep_embeddings",
    "VEPResult",
    "chromosome_code",
    "vep_features",
    "evaluate_vep_svm",
    "TSS_BUCKETS",
    "AlleleMismatchError",
]

#: TSS-distance buckets of spec §7 (inclusive bounds, so boundary rows fall in two buckets).
TSS_BUCKETS = (("0-30k", 0, 30_000), ("30k-100k", 30_000, 100_000), ("100k+", 100_000, math.inf))


@dataclasses.dataclass
class VariantRecord:
    chrom: str
    pos: int
    ref: str
    alt: str
    id: str = "."
    label: int = -1
    split: str = "all"
    tissue: str = ""
    distance_to_nearest_tss: float = math.nan
    line: int = 0


_ALLELE = set("ACGTNacgtn")


def _check_allele(a: str, what: str, where: str, multi: bool = False) -> str:
    """``a`` itself, or raise naming ``where``; with ``multi`` each comma-separated allele is checked."""
    for part in (a.split(",") if multi else [a]):
        if not part or set(part) - _ALLELE:
            raise ValueError(f"{where}: {what} allele {a!r} must be A/C/G/T/N bases"
                             + (" (comma-separated for several alleles)" if multi else ""))
    return a


def split_alleles(records) -> list[VariantRecord]:
    """One record per ALT allele: a multi-allelic record (``alt`` ``"A,T"``) becomes one record per
    allele, in order, with the same id, line and annotations, so every output row names its allele."""
    out = []
    for r in records:
        alts = r.alt.split(",")
        out.extend([r] if len(alts) == 1 else [dataclasses.replace(r, alt=a) for a in alts])
    return out


def read_variant_file(path) -> list[VariantRecord]:
    """Read variants from a VCF (``#CHROM POS ID REF ALT …``; INFO keys ``label``, ``split``,
    ``tissue``, ``distance_to_nearest_tss`` are used when present) or a TSV with a header naming
    ``chrom``, ``pos``, ``ref``, ``alt`` (optional ``id``, ``label``, ``split``, ``tissue``,
    ``distance_to_nearest_tss``).

    Raises
    ------
    ValueError
        A malformed line (too few fields, non-integer or non-positive position, bad allele, bad
        label), with ``path:line`` in the message; an empty file.
    """
    from strandwise.data.labelled import _open_text
    from strandwise.io.fasta import require_file

    path = require_file(path, "variant file")
    with _open_text(path) as fh:
        lines = fh.read().splitlines()
    is_vcf = any(l.startswith("##fileformat=VCF") or l.startswith("#CHROM") for l in lines[:200])
    out: list[VariantRecord] = []
    header = None
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("##"):
            continue
        where = f"{path}:{lineno}"
        if is_vcf:
            if line.startswith("#"):
                continue
            f = line.rstrip("\r").split("\t")
            if len(f) < 5:
                raise ValueError(f"{where}: malformed VCF line: expected at least 5 tab-separated fields (CHROM POS ID REF ALT); got {len(f)}")
            rec = {"chrom": f[0], "pos": f[1], "id": f[2], "ref": f[3], "alt": f[4]}
            if len(f) >= 8 and f[7] not in (".", ""):
                for kv in f[7].split(";"):
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        rec[k.strip().lower()] = v
        else:
            f = line.rstrip("\r").split("\t")
            if header is None:
                header = [h.strip().lstrip("#").lower() for h in f]
                missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in header]
                if missing:
                    raise ValueError(f"{where}: variant TSV header must name chrom, pos, ref, alt; missing {missing}")
                continue
            if len(f) != len(header):
                raise ValueError(f"{where}: malformed line: expected {len(header)} tab-separated fields; got {len(f)}")
            rec = dict(zip(header, f))
        try:
            pos = int(rec["pos"])
        except ValueError:
            raise ValueError(f"{where}: position must be an integer; got {rec['pos']!r}") from None
        if pos < 1:
            raise ValueError(f"{where}: position must be >= 1 (1-based); got {pos}")
        ref = _check_allele(rec["ref"].strip(), "REF", where)
        alt = _check_allele(rec["alt"].strip(), "ALT", where, multi=True)
        label = rec.get("label", rec.get("labels", ""))
        try:
            label = int(float(label)) if str(label).strip() not in ("", ".") else -1
        except ValueError:
            raise ValueError(f"{where}: label must be 0/1 (or empty); got {label!r}") from None
        dist = rec.get("distance_to_nearest_tss", "")
        try:
            dist = float(dist) if str(dist).strip() not in ("", ".") else math.nan
        except ValueError:
            raise ValueError(f"{where}: distance_to_nearest_tss must be a number; got {dist!r}") from None
        out.append(VariantRecord(rec["chrom"].strip(), pos, ref, alt, rec.get("id", ".") or ".", label,
                                 (rec.get("split") or "all").strip(), (rec.get("tissue") or "").strip(), dist, lineno))
    if not out:
        raise ValueError(f"{path}: no variants")
    return out


def variant_index(ref_ids: torch.Tensor, alt_ids: torch.Tensor) -> torch.Tensor:
    """Upstream's rule per row: ``L//2`` if ref and alt differ there, else the last differing
    position, else −1. ``ref_ids``/``alt_ids``: ``(B, L)``; returns ``(B,)`` int64."""
    B, L = ref_ids.shape
    diff = ref_ids != alt_ids
    pos = torch.arange(L, device=ref_ids.device).expand(B, L)
    last = torch.where(diff, pos, torch.full_like(pos, -1)).amax(1)
    return torch.where(diff[:, L // 2], torch.full_like(last, L // 2), last)


def vep_window_indices(idx: torch.Tensor, L: int, window: int = 1536) -> torch.Tensor:
    """``(B, K)`` positions ``idx + o`` for ``o = −window//2 … window − window//2``, clamped to
    ``[0, L−1]``; ``K = window + 1``."""
    off = torch.arange(-(window // 2), window - window // 2 + 1, device=idx.device)
    return (idx[:, None] + off[None, :]).clamp(0, L - 1)


def chromosome_code(name: str) -> int:
    """``'chr9' → 9``, X → −1, Y → −2, M/MT/Mito → −3, anything else → −4."""
    n = name[3:] if name.lower().startswith("chr") else name
    if n.isdigit():
        return int(n)
    return {"X": -1, "Y": -2, "M": -3, "MT": -3, "MITO": -3}.get(n.upper(), -4)


@dataclasses.dataclass
class VEPResult:
    """``splits``: split → dict of numpy arrays (the outputs above); ``kept``: split → records;
    ``skipped``: list of ``(record, reason)``; ``skip_counts``: reason → count."""

    splits: dict
    kept: dict
    skipped: list
    skip_counts: dict


@torch.no_grad()
def vep_embeddings(backbone, fetch, records, length: int, window: int = 1536, batch_size: int = 1,
                   on_ref_mismatch: str = "error", device=None, progress: bool = False) -> VEPResult:
    """Centred-window VEP embeddings for every split of ``records``.

    Parameters
    ----------
    backbone : DNAEmbeddingModelCaduceus
        Built with ``conjoin_train=True`` (both strands) and ``aligned=True``.
    fetch : callable
        ``fetch(chrom, start, end) -> str``, returning fewer bases past a chromosome end and raising
        ``KeyError`` for an unknown chromosome (:meth:`SequenceStore.fetch_clipped`).
    records : list of VariantRecord
        A multi-allelic record (``alt`` ``"A,T"``) gives one output row per allele
        (:func:`split_alleles`); ``VEPResult.kept`` holds the single-allele records.
    length : int
        Model input length L.
    window : int
        Averaging window (K = window + 1 positions).
    on_ref_mismatch : {"error", "skip"}

    Raises
    ------
    AlleleMismatchError
        A reference allele that does not match the FASTA (``on_ref_mismatch="error"``).
    KeyError
        A chromosome that is not in the FASTA.
    """
    if on_ref_mismatch not in ("error", "skip"):
        raise ValueError(f"on_ref_mismatch must be 'error' or 'skip'; got {on_ref_mismatch!r}")
    records = split_alleles(records)
    variants = [Variant(r.chrom, r.pos, r.ref, r.alt, str(i)) for i, r in enumerate(records)]
    win = build_variant_windows(fetch, variants, length, strict=False)
    skipped, counts = [], {}
    for s in win.skipped:
        rec = records[int(s["variant"].id)]
        reason = s["reason"]
        if reason.startswith("reference allele mismatch") and on_ref_mismatch == "error":
            raise AlleleMismatchError(
                f"line {rec.line}: {rec.chrom}:{rec.pos} {rec.ref}>{rec.alt}: {reason} (the FASTA and the "
                f"variant file disagree; wrong genome build? set on_ref_mismatch: skip to count and skip)"
            )
        if reason.startswith("chromosome not found"):
            raise KeyError(f"line {rec.line}: chromosome {rec.chrom!r} of {rec.chrom}:{rec.pos} is not in the FASTA")
        key = reason.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
        skipped.append((rec, reason))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = backbone.eval().to(device)
    from strandwise.interpret.embeddings import encode_padded

    kept_recs = [records[int(v.id)] for v in win.kept]
    order = {}
    for j, r in enumerate(kept_recs):
        order.setdefault(r.split, []).append(j)
    test_tissues = sorted({kept_recs[j].tissue for j in order.get("test", range(len(kept_recs)))} - {""})
    tissue_code = {t: i for i, t in enumerate(test_tissues)}
    splits, kept = {}, {}
    batches = [(sp, js[b : b + batch_size]) for sp, js in order.items() for b in range(0, len(js), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="vep", unit="batch")
    feats = {sp: {"f": [], "r": [], "idx": []} for sp in order}
    for sp, js in batches:
        ref = encode_padded([win.ref[j] for j in js], length).to(device)
        alt = encode_padded([win.alt[j] for j in js], length).to(device)
        idx = variant_index(ref, alt)
        pos = vep_window_indices(idx.clamp(min=0), length, window)
        means = []
        for x in (ref, alt):
            h, _ = backbone(x)
            if h.ndim != 4:
                raise ValueError("the VEP backbone must return both strands: build it with conjoin_train=True")
            g = torch.gather(h.float(), 1, pos[:, :, None, None].expand(-1, -1, h.shape[2], 2))
            means.append(g.mean(1))  # (B, d, 2)
        feats[sp]["f"].append(torch.cat([means[0][..., 0], means[1][..., 0]], -1).cpu())
        feats[sp]["r"].append(torch.cat([means[0][..., 1], means[1][..., 1]], -1).cpu())
        feats[sp]["idx"].append(idx.cpu())
    for sp, js in order.items():
        recs = [kept_recs[j] for j in js]
        kept[sp] = recs
        splits[sp] = {
            "concat_avg_ws": torch.cat(feats[sp]["f"]).numpy(),
            "rc_concat_avg_ws": torch.cat(feats[sp]["r"]).numpy(),
            "chromosome": np.array([chromosome_code(r.chrom) for r in recs], dtype=np.int64),
            "labels": np.array([r.label for r in recs], dtype=np.int64),
            "distance_to_nearest_tss": np.array([r.distance_to_nearest_tss for r in recs], dtype=np.float32),
            "tissue_embed": np.array([tissue_code.get(r.tissue, -1) for r in recs], dtype=np.int64),
            "variant_index": torch.cat(feats[sp]["idx"]).numpy().astype(np.int64),
        }
    return VEPResult(splits, kept, skipped, counts)


def vep_features(split: dict, how: str) -> np.ndarray:
    """``concat`` (forward only), ``rc`` or ``avg`` (``(concat + rc_concat)/2``) features (N, 2d)."""
    if how == "concat":
        return split["concat_avg_ws"]
    if how == "rc":
        return split["rc_concat_avg_ws"]
    if how == "avg":
        return (split["concat_avg_ws"] + split["rc_concat_avg_ws"]) / 2
    raise ValueError(f"features must be concat, rc or avg; got {how!r}")


#: train/test features per model variant (spec §7).
_PROTOCOL = {"ps": ("avg", "avg"), "ph": ("concat", "avg"), "wo_equiv": ("concat", "concat")}


def evaluate_vep_svm(train: dict, test: dict, variant: str = "ps", C=(1.0, 5.0, 10.0), seeds=(1, 2, 3, 4, 5),
                     n_train: int = 5000, buckets=TSS_BUCKETS, classifier: str = "svm") -> dict:
    """The §7 protocol: per TSS bucket, C and seed, sample ``n_train`` training rows (with
    replacement only if fewer exist), features = embedding + tissue code, StandardScaler → SVC(RBF,
    gamma "scale") (or logistic regression), AUROC from hard labels (upstream's number, equal to
    balanced accuracy) and from decision scores.

    Returns
    -------
    dict with ``rows`` (one per bucket/C/seed) and ``summary`` (per bucket and C: mean and sd of
    both AUROCs over seeds; ``best_C`` by mean hard-label AUROC).
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC
    except ImportError:
        raise ImportError("the VEP SVM evaluation needs scikit-learn: pip install 'strandwise[vep]'") from None
    if variant not in _PROTOCOL:
        raise ValueError(f"variant must be one of {sorted(_PROTOCOL)}; got {variant!r}")
    ftr, fte = _PROTOCOL[variant]

    def prep(split, how):
        X = np.concatenate([vep_features(split, how), split["tissue_embed"][:, None].astype(np.float32)], 1)
        y, dist = split["labels"], split["distance_to_nearest_tss"]
        ok = np.isfinite(X).all(1) & (y >= 0)
        return X[ok], y[ok], dist[ok]

    Xtr, ytr, dtr = prep(train, ftr)
    Xte, yte, dte = prep(test, fte)
    if len(np.unique(ytr)) < 2:
        raise ValueError("the training split needs labelled variants of both classes (label 0 and 1)")
    if not np.isfinite(dtr).any():
        buckets = (("all", -math.inf, math.inf),)
    rows = []
    for name, lo, hi in buckets:
        mtr = (dtr >= lo) & (dtr <= hi) if np.isfinite(lo) else np.ones(len(dtr), bool)
        mte = (dte >= lo) & (dte <= hi) if np.isfinite(lo) else np.ones(len(dte), bool)
        if len(np.unique(ytr[mtr])) < 2 or len(np.unique(yte[mte])) < 2:
            continue
        for c in C:
            for seed in seeds:
                np.random.seed(seed)
                idx = np.flatnonzero(mtr)
                pick = np.random.choice(idx, n_train, replace=len(idx) < n_train)
                scaler = StandardScaler().fit(Xtr[pick])
                if classifier == "svm":
                    clf = SVC(C=c, kernel="rbf", gamma="scale", random_state=seed)
                else:
                    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
                clf.fit(scaler.transform(Xtr[pick]), ytr[pick])
                Xt = scaler.transform(Xte[mte])
                rows.append({"bucket": name, "C": c, "seed": seed, "n_train": int(mtr.sum()), "n_test": int(mte.sum()),
                             "auroc_hard": float(roc_auc_score(yte[mte], clf.predict(Xt))),
                             "auroc_score": float(roc_auc_score(yte[mte], clf.decision_function(Xt)))})
    summary = {}
    for name, _, _ in buckets:
        per_c = {}
        for c in C:
            rs = [r for r in rows if r["bucket"] == name and r["C"] == c]
            if rs:
                h, s = np.array([r["auroc_hard"] for r in rs]), np.array([r["auroc_score"] for r in rs])
                per_c[str(c)] = {"auroc_hard_mean": float(h.mean()), "auroc_hard_sd": float(h.std()),
                                 "auroc_score_mean": float(s.mean()), "auroc_score_sd": float(s.std())}
        if per_c:
            best = max(per_c, key=lambda k: per_c[k]["auroc_hard_mean"])
            summary[name] = {"per_C": per_c, "best_C": float(best)}
    return {"rows": rows, "summary": summary}
