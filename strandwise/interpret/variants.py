"""Variant effects: predictions for reference vs alternate alleles (spec §7.2).

Window construction (all variant types, VCF conventions: ``pos`` is 1-based, ``ref`` is the genome
sequence starting at ``pos``):

* Both windows have the model's input length ``L`` and put the variant's first reference base at
  index ``c = L//2``: the reference window is ``genome[p0 − c, p0 − c + L)`` with ``p0 = pos − 1``.
* The alternate window shares the left flank ``genome[p0 − c, p0)``, then the ``alt`` allele, then
  the genome right after the reference allele, ``genome[p0 + len(ref), …)``, for exactly
  ``L − c − len(alt)`` bases. So the length stays ``L``: a deletion pulls more right flank in, an
  insertion trims the right flank (an insertion longer than ``L − c`` is itself cut at the window
  end). SNVs and MNVs (``len(ref) == len(alt)``) change only the allele bases.
* The reference allele is checked against the genome (case-insensitive). A mismatch, a window past
  either chromosome end, an unknown chromosome, or a symbolic/unsupported allele (``<DEL>``, ``*``,
  ``.``) skips the variant with its reason (or raises with ``strict=True``); multi-allelic ``alt``
  fields (``"A,T"``) are split into one record per allele.

Scores per variant (for signal group ``group``):

* ``delta_log_counts`` = alt − ref predicted ``log(1 + counts)``;
* ``profile_jsd`` = Jensen–Shannon divergence (natural log) between the ref and alt profile
  distributions, each the joint softmax over the group's channels × output positions. Positions are
  compared as they lie in the windows: left of the variant they are the same genome bases, right of
  an indel they are shifted by ``len(alt) − len(ref)`` (part of the indel's effect);
* ``delta_at_variant`` = alt − ref expected counts summed over the group's channels on the output
  positions within ``variant_flank`` bp of the variant (index ``c − trimming``).

Records come back sorted by ``|effect|`` (``sort_by``, default ``delta_log_counts``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterable, Sequence

import torch

from strandwise.evaluate.predict import expected_counts, predict
from strandwise.io.sequence import one_hot_encode

__all__ = [
    "AlleleMismatchError",
    "Variant",
    "VariantWindows",
    "VariantEffects",
    "parse_variants",
    "variant_type",
    "build_variant_windows",
    "score_variants",
    "write_variant_effects",
    "VARIANT_COLUMNS",
]

Fetch = Callable[[str, int, int], str]

#: TSV columns of :func:`write_variant_effects`.
VARIANT_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "type", "ref_log_counts", "alt_log_counts",
                   "delta_log_counts", "profile_jsd", "delta_at_variant")

_ALLELE_OK = set("ACGTNacgtn")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One allele change. ``pos`` is 1-based (VCF); ``ref`` starts at ``pos``."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str = "."


def parse_variants(variants: Iterable) -> list[Variant]:
    """Normalise variants given as :class:`Variant`, dicts or ``(chrom, pos, ref, alt[, id])`` tuples.

    Multi-allelic ``alt`` (comma-separated) becomes one variant per allele.

    Raises
    ------
    ValueError
        For a missing field, a non-positive or non-integer ``pos``, or an empty ``ref``/``alt``.
    """
    out = []
    for i, v in enumerate(variants):
        if isinstance(v, Variant):
            fields = dataclasses.astuple(v)
        elif isinstance(v, dict):
            try:
                fields = (v["chrom"], v["pos"], v["ref"], v["alt"], v.get("id", "."))
            except KeyError as exc:
                raise ValueError(f"variant {i} lacks field {exc.args[0]!r} (need chrom, pos, ref, alt)") from None
        else:
            fields = tuple(v)
            if len(fields) not in (4, 5):
                raise ValueError(f"variant {i} must be (chrom, pos, ref, alt[, id]); got {v!r}")
            if len(fields) == 4:
                fields = fields + (".",)
        chrom, pos, ref, alt, vid = fields
        if isinstance(pos, bool) or int(pos) != pos or int(pos) < 1:
            raise ValueError(f"variant {i}: pos must be a positive 1-based int; got {pos!r}")
        ref, alt = str(ref), str(alt)
        if not ref or not alt:
            raise ValueError(f"variant {i}: ref and alt must be non-empty")
        for a in alt.split(","):
            out.append(Variant(str(chrom), int(pos), ref, a, str(vid) if vid not in (None, "") else "."))
    return out


def variant_type(v: Variant) -> str:
    """``"SNV"``, ``"MNV"``, ``"insertion"``, ``"deletion"`` or ``"complex"``."""
    lr, la = len(v.ref), len(v.alt)
    if lr == la:
        return "SNV" if lr == 1 else "MNV"
    if lr < la and v.alt.upper().startswith(v.ref.upper()):
        return "insertion"
    if lr > la and v.ref.upper().startswith(v.alt.upper()):
        return "deletion"
    return "complex"


@dataclasses.dataclass
class VariantWindows:
    """Result of :func:`build_variant_windows`.

    ``ref``/``alt`` are the window strings of the ``kept`` variants (same order); ``skipped`` holds
    ``{"variant": Variant, "reason": str}``; ``reasons`` counts skips per reason.
    """

    ref: list
    alt: list
    kept: list
    skipped: list

    @property
    def reasons(self) -> dict:
        out: dict = {}
        for s in self.skipped:
            key = s["reason"].split(":")[0]
            out[key] = out.get(key, 0) + 1
        return out


class AlleleMismatchError(ValueError):
    """The reference allele of a variant does not match the genome."""


def build_variant_windows(fetch: Fetch, variants: Iterable, length: int, strict: bool = False) -> VariantWindows:
    """Reference and alternate windows of ``length`` bp centred on each variant.

    Parameters
    ----------
    fetch : callable
        ``fetch(chrom, start, end) -> str``: genome bases of ``[start, end)``, 0-based. It should
        return fewer bases past the chromosome end (skip reason "window runs past the chromosome
        end") and raise ``KeyError`` for an unknown chromosome ("chromosome not found"); any
        ``ValueError``/``IndexError`` it raises skips the variant as "window cannot be fetched".
    variants : iterable
        See :func:`parse_variants`.
    length : int
        Model input length ``L``.
    strict : bool
        Raise :class:`AlleleMismatchError` / ``ValueError`` instead of skipping.

    Returns
    -------
    VariantWindows
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an int >= 2; got {length!r}")
    c = length // 2
    kept, refs, alts, skipped = [], [], [], []

    def skip(v, reason, exc=ValueError):
        if strict:
            raise exc(f"{v.chrom}:{v.pos} {v.ref}>{v.alt} ({v.id}): {reason}")
        skipped.append({"variant": v, "reason": reason})

    for v in parse_variants(variants):
        if set(v.alt) - _ALLELE_OK or set(v.ref) - _ALLELE_OK:
            skip(v, "unsupported allele: only A, C, G, T, N alleles are scored")
            continue
        p0 = v.pos - 1
        lo = p0 - c
        if lo < 0:
            skip(v, "window starts before the chromosome start")
            continue
        # One fetch covers exactly the ref window and the right flank a deletion needs (no more:
        # a variant whose window ends at the chromosome end must not ask for bases past it).
        alt_right = max(0, length - c - len(v.alt))
        need = max(length, c + len(v.ref) + alt_right)
        try:
            region = fetch(v.chrom, lo, lo + need)
        except KeyError as exc:
            skip(v, f"chromosome not found: {exc}")
            continue
        except (ValueError, IndexError) as exc:
            skip(v, f"window cannot be fetched: {exc}")
            continue
        region = str(region)
        if len(region) < need:
            skip(v, "window runs past the chromosome end")
            continue
        genome_ref = region[c : c + len(v.ref)]
        if genome_ref.upper() != v.ref.upper():
            skip(v, f"reference allele mismatch: genome has {genome_ref!r}", AlleleMismatchError)
            continue
        ref_win = region[:length]
        alt_win = (region[:c] + v.alt + region[c + len(v.ref) : c + len(v.ref) + alt_right])[:length]
        kept.append(v)
        refs.append(ref_win)
        alts.append(alt_win)
    return VariantWindows(ref=refs, alt=alts, kept=kept, skipped=skipped)


def _encode(seqs: Sequence[str]) -> torch.Tensor:
    return torch.stack([one_hot_encode(s, dtype=torch.float32, strict=False) for s in seqs])


def _group_slice(signal_groups, group):
    a = sum(signal_groups[:group])
    return a, a + signal_groups[group]


def _jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * torch.log(a / b), torch.zeros_like(a)).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@dataclasses.dataclass
class VariantEffects:
    """Scored variants (``records``, sorted by ``|sort_by|``) and the skipped ones with reasons."""

    records: list
    skipped: list
    sort_by: str

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def _predict_pair(model, ref, alt, batch_size, device, rc):
    K = int(getattr(model, "n_control_tracks", 0))
    ctl = None if K == 0 else torch.zeros(ref.shape[0], K, ref.shape[-1])
    kw = dict(batch_size=batch_size, device=device, reverse_complement_average=rc)
    return predict(model, ref, ctl, **kw), predict(model, alt, ctl, **kw)


def score_variants(
    model,
    fetch: Fetch,
    variants: Iterable,
    input_length: int,
    group: int = 0,
    variant_flank: int = 10,
    sort_by: str = "delta_log_counts",
    batch_size: int = 256,
    chunk_size: int = 4096,
    device=None,
    reverse_complement_average: bool = False,
    strict: bool = False,
    progress: bool = False,
) -> VariantEffects:
    """Score variants with a Cherimoya: Δ log counts, profile JSD and Δ counts at the variant.

    Parameters
    ----------
    model : Cherimoya
    fetch : callable
        ``fetch(chrom, start, end) -> str`` (0-based, end exclusive).
    variants : iterable
        :class:`Variant`, dicts or tuples (``pos`` 1-based).
    input_length : int
        Model input length.
    group : int
        Signal group to score.
    variant_flank : int
        Half-width (bp) of the output span summed for ``delta_at_variant``.
    sort_by : {"delta_log_counts", "profile_jsd", "delta_at_variant"}
        Records sorted by the absolute value of this column, largest first.
    batch_size, device, reverse_complement_average
        Passed to :func:`~strandwise.evaluate.predict`.
    chunk_size : int
        Variants encoded at a time (bounds memory).
    strict : bool
        Raise on the first allele mismatch or unusable variant instead of skipping it.

    Returns
    -------
    VariantEffects
    """
    if sort_by not in ("delta_log_counts", "profile_jsd", "delta_at_variant"):
        raise ValueError(f"sort_by must be delta_log_counts, profile_jsd or delta_at_variant; got {sort_by!r}")
    G = len(model.signal_groups)
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < G:
        raise ValueError(f"group must be an int in [0, {G}); got {group!r}")
    L_out = model.output_length(input_length)
    if L_out <= 0:
        raise ValueError(f"input_length {input_length} leaves no output after trimming {model.trimming}")
    windows = build_variant_windows(fetch, variants, input_length, strict=strict)
    a, b = _group_slice(model.signal_groups, group)
    v_out = input_length // 2 - model.trimming
    lo, hi = max(0, v_out - variant_flank), min(L_out, v_out + variant_flank + 1)
    records = []
    from tqdm.auto import tqdm

    n = len(windows.kept)
    for s in tqdm(range(0, n, chunk_size), disable=not progress, desc="variants", unit="chunk"):
        ref = _encode(windows.ref[s : s + chunk_size])
        alt = _encode(windows.alt[s : s + chunk_size])
        (pr, cr), (pa, ca) = _predict_pair(model, ref, alt, batch_size, device, reverse_complement_average)
        m = pr.shape[0]
        qr = torch.softmax(pr[:, a:b].reshape(m, -1).double(), dim=-1)
        qa = torch.softmax(pa[:, a:b].reshape(m, -1).double(), dim=-1)
        jsd = _jsd(qr, qa)
        er = expected_counts(pr, cr, model.signal_groups)[:, a:b, lo:hi].sum(dim=(1, 2))
        ea = expected_counts(pa, ca, model.signal_groups)[:, a:b, lo:hi].sum(dim=(1, 2))
        for j, v in enumerate(windows.kept[s : s + chunk_size]):
            records.append({
                "chrom": v.chrom, "pos": v.pos, "id": v.id, "ref": v.ref, "alt": v.alt,
                "type": variant_type(v),
                "ref_log_counts": float(cr[j, group]), "alt_log_counts": float(ca[j, group]),
                "delta_log_counts": float(ca[j, group] - cr[j, group]),
                "profile_jsd": float(jsd[j]),
                "delta_at_variant": float(ea[j] - er[j]),
            })
    records.sort(key=lambda r: -abs(r[sort_by]) if math.isfinite(r[sort_by]) else 0.0)
    return VariantEffects(records=records, skipped=windows.skipped, sort_by=sort_by)


def write_variant_effects(
    effects: VariantEffects, output_dir, name: str = "variants", model=None, fetch: Fetch | None = None,
    input_length: int | None = None, top_k: int = 10, group: int = 0, device=None,
    reverse_complement_average: bool = False,
) -> dict:
    """Write ``{name}.tsv`` (sorted), ``{name}.skipped.tsv`` and, with a model, plots + HTML.

    With ``model``, ``fetch`` and ``input_length`` given, the ``top_k`` variants are re-predicted and
    their ref/alt expected-count profiles drawn to ``{name}_plots/``, linked from ``{name}.html``.
    Pass the ``reverse_complement_average`` used for scoring so the plots show the same predictions.

    Returns
    -------
    dict of written paths: ``tsv``, ``skipped``, ``html`` (or None), ``plots`` (list).
    """
    from strandwise.interpret.report import HTMLReport, write_tsv

    os.makedirs(output_dir, exist_ok=True)
    tsv = os.path.join(output_dir, f"{name}.tsv")
    write_tsv(effects.records, tsv, VARIANT_COLUMNS)
    skipped_tsv = os.path.join(output_dir, f"{name}.skipped.tsv")
    write_tsv([{**dataclasses.asdict(s["variant"]), "reason": s["reason"]} for s in effects.skipped],
              skipped_tsv, ("chrom", "pos", "id", "ref", "alt", "reason"))
    out = {"tsv": tsv, "skipped": skipped_tsv, "html": None, "plots": []}
    if model is None or fetch is None or input_length is None:
        return out
    from strandwise.interpret.plots import plot_variant_profiles

    top = effects.records[:top_k]
    rep = HTMLReport(f"Variant effects ({len(effects.records)} scored, {effects.n_skipped} skipped)")
    rep.add_text(f"Sorted by |{effects.sort_by}|. Windows of {input_length} bp centred on each variant; "
                 "indels keep the window length by trimming or extending the right flank.")
    rep.add_table(effects.records, list(VARIANT_COLUMNS), tsv=tsv)
    rep.add_link(skipped_tsv, f"skipped variants ({effects.n_skipped})")
    if top:
        w = build_variant_windows(fetch, [Variant(r["chrom"], r["pos"], r["ref"], r["alt"], r["id"]) for r in top],
                                  input_length)
        (pr, cr), (pa, ca) = _predict_pair(model, _encode(w.ref), _encode(w.alt), 64, device,
                                           reverse_complement_average)
        er = expected_counts(pr, cr, model.signal_groups).numpy()
        ea = expected_counts(pa, ca, model.signal_groups).numpy()
        a, b = _group_slice(model.signal_groups, group)
        v_out = input_length // 2 - model.trimming
        plot_dir = os.path.join(output_dir, f"{name}_plots")
        for i, r in enumerate(top):
            png = os.path.join(plot_dir, f"{i:03d}_{r['chrom']}_{r['pos']}.png")
            title = (f"{r['chrom']}:{r['pos']} {r['ref']}>{r['alt']} {r['id']}  "
                     f"Δlog counts {r['delta_log_counts']:+.3f}, JSD {r['profile_jsd']:.3f}")
            plot_variant_profiles(er[i, a:b], ea[i, a:b], title=title, variant_index=v_out, path=png)
            out["plots"].append(png)
            rep.add_image(png, caption=title)
    out["html"] = rep.write(os.path.join(output_dir, f"{name}.html"))
    return out
