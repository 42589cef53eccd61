"""``strandwise pipeline-config`` and ``strandwise pipeline`` — from reads to a trained model.

Steps, in order (each writes its outputs into ``output_dir`` and can be run alone with
``--step``):

1. ``bigwig``    reads (fragments / BEDPE / BAM) → base-resolution bigWig per track (assay preset:
                 ATAC +4/−4 insertions, DNase insertions, ChIP-seq / PRO-cap stranded 5' ends);
2. ``peaks``     MACS3 if installed, else the built-in caller (skipped when peaks are given);
3. ``negatives`` GC-matched background loci (seeded);
4. ``fit``       train the Cherimoya (the ``fit`` command's outputs);
5. ``evaluate``  metrics on the validation and test chromosomes;
6. ``predict``   predicted bigWigs over the test chromosomes;
7. ``attribute`` DeepLIFT/SHAP attributions of the validation + test peaks (counts head);
8. ``seqlets``   seqlets from the attributions, annotated with tomtom against ``motifs``;
9. ``motifs``    TF-MoDISco patterns, matched to ``motifs``;
10. ``report``   one HTML page linking every table and picture.

``skip_steps`` leaves steps out (e.g. ``["motifs"]`` on a small machine).

Every step records a fingerprint of its inputs (file sizes and modification times, and its
settings) in ``NAME.pipeline.json``; re-running skips a step whose fingerprint is unchanged and
whose outputs exist, so editing the training settings reruns ``fit`` and what follows, not the
read conversion. A step that fails stops the run with one line naming the step; fix the cause
and run the same command again to resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import time

from strandwise._config import ConfigError, dump_config, from_dict, load_config_file
from strandwise.io.atomic import atomic_write_text

#: Read-processing presets per assay (spec §5.5).
ASSAYS = {
    "atac": {"mode": "insertion", "shift": [4, -4], "stranded": False},
    "dnase": {"mode": "insertion", "shift": [0, 0], "stranded": False},
    "chip": {"mode": "insertion", "shift": [0, 0], "stranded": True},
    "procap": {"mode": "insertion", "shift": [0, 0], "stranded": True},
}

STEPS = ("bigwig", "peaks", "negatives", "fit", "evaluate", "predict", "attribute", "seqlets", "motifs",
         "report")


class PipelineStepError(ValueError):
    """A step failed; the message names it and how to resume."""


@dataclasses.dataclass
class PipelineConfig:
    """Raw pointers and settings of a pipeline run.

    Attributes
    ----------
    name, output_dir : str
    genome : str
        FASTA (plain or bgzipped + index).
    signals : list of str
        Read files of the assay (fragments/BEDPE/BAM), pooled into one track (two for stranded
        assays).
    controls : list of str
        Control read files (e.g. ChIP input), pooled likewise.
    peaks : str, optional
        Peak file; called from the signal reads when absent.
    negatives : str, optional
        Background loci; GC-matched negatives are made when absent.
    motifs : str, optional
        MEME file used by the interpretation steps.
    assay : {"atac", "dnase", "chip", "procap"}
    genome_size : float
        MACS3 ``-g``.
    peak_caller : {"auto", "macs3", "pileup"}
        ``auto`` = MACS3 when installed, else the built-in caller.
    mask, mask_chroms
        Regions / chromosomes zeroed in the tracks and excluded from peaks.
    rename : dict
        Chromosome renaming applied to the reads (e.g. ``{"I": "chrI"}``).
    fit : dict
        Sections of the ``fit`` config (``data``, ``model``, ``train``, ``evaluate``) merged
        over the defaults; ``data`` needs at least the chromosome splits.
    random_state : int
        Seeds negatives, sampling and initialisation.
    attribution : dict
        Options of the ``attribute`` step: ``algorithm``, ``n_shuffles``, ``max_loci``.
    skip_steps : list of str
        Steps to leave out.
    """

    name: str = "strandwise"
    output_dir: str | None = None
    genome: str | None = None
    signals: list = dataclasses.field(default_factory=list)
    controls: list = dataclasses.field(default_factory=list)
    peaks: str | None = None
    negatives: str | None = None
    motifs: str | None = None
    assay: str = "atac"
    genome_size: float = 2.7e9
    peak_caller: str = "auto"
    mask: str | None = None
    mask_chroms: list = dataclasses.field(default_factory=list)
    rename: dict = dataclasses.field(default_factory=dict)
    fit: dict = dataclasses.field(default_factory=dict)
    random_state: int = 0
    attribution: dict = dataclasses.field(default_factory=dict)
    skip_steps: list = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        if self.assay not in ASSAYS:
            raise ConfigError(f"assay must be one of {sorted(ASSAYS)}; got {self.assay!r}")
        if not self.genome:
            raise ConfigError("genome is required (a FASTA file)")
        if not self.signals:
            raise ConfigError("signals is required: one or more read files (fragments, BEDPE or BAM)")
        if self.peak_caller not in ("auto", "macs3", "pileup"):
            raise ConfigError(f"peak_caller must be auto, macs3 or pileup; got {self.peak_caller!r}")
        bad = sorted(set(self.skip_steps) - set(STEPS))
        if bad:
            raise ConfigError(f"unknown step(s) {bad} in skip_steps; steps are {list(STEPS)}")
        bad = sorted(set(self.attribution) - {"algorithm", "n_shuffles", "max_loci"})
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in attribution (algorithm, n_shuffles, max_loci)")
        unknown = sorted(set(self.fit) - {"data", "model", "train", "evaluate"})
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown} in fit (use data, model, train, evaluate)")

    @property
    def out_dir(self) -> str:
        return os.path.abspath(self.output_dir or self.name)

    def path(self, suffix: str) -> str:
        return os.path.join(self.out_dir, f"{self.name}{suffix}")

    def signal_bigwigs(self) -> list[str]:
        if ASSAYS[self.assay]["stranded"]:
            return [self.path(".+.bw"), self.path(".-.bw")]
        return [self.path(".bw")]

    def control_bigwigs(self) -> list[str]:
        if not self.controls:
            return []
        if ASSAYS[self.assay]["stranded"]:
            return [self.path(".control.+.bw"), self.path(".control.-.bw")]
        return [self.path(".control.bw")]

    def peak_file(self) -> str:
        return self.peaks or self.path("_peaks.narrowPeak")

    def negatives_file(self) -> str:
        return self.negatives or self.path(".negatives.bed")


def load_pipeline_config(path) -> PipelineConfig:
    raw = load_config_file(path)
    cfg = from_dict(PipelineConfig, raw, where="pipeline config")
    base = os.path.dirname(os.path.abspath(os.fspath(path)))

    def fix(p):
        return p if p is None or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    cfg.genome = fix(cfg.genome)
    cfg.signals = [fix(p) for p in cfg.signals]
    cfg.controls = [fix(p) for p in cfg.controls]
    cfg.peaks, cfg.negatives, cfg.motifs, cfg.mask = map(fix, (cfg.peaks, cfg.negatives, cfg.motifs, cfg.mask))
    return cfg


def fit_config(cfg: PipelineConfig):
    """The ``fit`` config the pipeline trains with (files from the earlier steps)."""
    from strandwise.cli.profile_config import load_fit_config

    signals = cfg.signal_bigwigs()
    controls = cfg.control_bigwigs()
    data = dict(cfg.fit.get("data") or {})
    data.update(
        sequences=cfg.genome,
        signals=[signals] if len(signals) == 2 else signals,
        controls=None if not controls else ([controls] if len(controls) == 2 else controls),
        loci=cfg.peak_file(),
        negatives=cfg.negatives_file(),
    )
    data.setdefault("random_state", cfg.random_state)
    if cfg.peaks is None:
        data.setdefault("summits", True)
    raw = {"name": cfg.name, "output_dir": cfg.out_dir, "data": data}
    for section in ("model", "train", "evaluate"):
        if section in cfg.fit:
            raw[section] = cfg.fit[section]
    raw.setdefault("train", {})
    raw["train"] = {**raw["train"], "random_state": raw["train"].get("random_state", cfg.random_state)}
    return load_fit_config(raw)


# ------------------------------------------------------------------ fingerprints and state
def _file_sig(path) -> list:
    if path is None or not os.path.exists(path):
        return [path, None]
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def fingerprint(settings, files) -> str:
    blob = json.dumps({"settings": settings, "files": [_file_sig(f) for f in files]}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _State:
    def __init__(self, path):
        self.path = path
        self.data = json.load(open(path)) if os.path.exists(path) else {}

    def fresh(self, step, fp, outputs) -> bool:
        rec = self.data.get(step)
        return bool(rec) and rec.get("fingerprint") == fp and all(os.path.exists(o) for o in outputs)

    def record(self, step, fp, outputs, seconds):
        self.data[step] = {"fingerprint": fp, "outputs": outputs, "seconds": round(seconds, 2),
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")


# ------------------------------------------------------------------------------ the steps
def _step_bigwig(cfg, quiet):
    from strandwise.io.reads import reads_to_bigwig

    preset = ASSAYS[cfg.assay]
    common = dict(mode=preset["mode"], shift=tuple(preset["shift"]), stranded=preset["stranded"],
                  rename=cfg.rename or None, mask=cfg.mask, mask_chroms=cfg.mask_chroms,
                  skip_unknown_chroms=True)
    reads_to_bigwig(cfg.signals, cfg.path(".bw"), cfg.genome, **common)
    if cfg.controls:
        reads_to_bigwig(cfg.controls, cfg.path(".control.bw"), cfg.genome, **common)
    return cfg.signal_bigwigs() + cfg.control_bigwigs()


def _step_peaks(cfg, quiet):
    from strandwise.io.reads import call_peaks, macs3_available

    if cfg.peak_caller == "macs3" and not macs3_available():
        raise RuntimeError("MACS3 is not installed: pip install 'strandwise[peaks]' "
                           "(or set peak_caller to auto/pileup to use the built-in caller)")
    out, used = call_peaks(cfg.signals, cfg.peak_file(), cfg.genome, method=cfg.peak_caller,
                           genome_size=cfg.genome_size,
                           rename=cfg.rename or None, mask=cfg.mask, mask_chroms=cfg.mask_chroms)
    if not quiet:
        print(f"[pipeline] peaks called with {used}")
    return [out]


def _step_negatives(cfg, quiet):
    from strandwise.data.negatives import write_negatives

    fc = fit_config(cfg)
    write_negatives(cfg.negatives_file(), cfg.peak_file(), cfg.genome, exclusion=cfg.mask,
                    summits=fc.data.summits, in_window=fc.data.in_window,
                    out_window=fc.data.out_window, random_state=cfg.random_state)
    return [cfg.negatives_file()]


def _step_fit(cfg, quiet):
    from strandwise.cli.fit import run_fit

    fc = fit_config(cfg)
    run_fit(fc, quiet=quiet)
    return [fc.path(".torch"), fc.path(".log")]


def _step_evaluate(cfg, quiet):
    from strandwise.cli.evaluate import run_evaluate

    fc = fit_config(cfg)
    outs = []
    for split in ("valid", "test"):
        run_evaluate(fc, split=split, quiet=quiet)
        outs.append(fc.path(f".{split}.performance.tsv"))
    return outs


def _step_predict(cfg, quiet):
    from strandwise.cli.predict import run_predict

    fc = fit_config(cfg)
    return run_predict(fc, chroms=fc.data.test_chroms, quiet=quiet)


def _interpret_context(cfg, quiet):
    """The interpretation commands' context, built from the resolved config that ``fit`` wrote."""
    from types import SimpleNamespace

    from strandwise.cli.interpret_common import Context

    fc = fit_config(cfg)
    return Context(SimpleNamespace(config=fc.path(".config.json"), quiet=quiet, command="pipeline"))


def _step_attribute(cfg, quiet):
    from strandwise.cli.attribute import run_attribute
    from strandwise.cli.interpret_common import ATTR_ATTR, ATTR_LOCI, ATTR_MASK, ATTR_OHE

    ctx = _interpret_context(cfg, quiet)
    opts = dict(cfg.attribution)
    run_attribute(ctx, algorithm=opts.get("algorithm", "deep_lift_shap"),
                  n_shuffles=int(opts.get("n_shuffles", 20)), max_loci=opts.get("max_loci"),
                  random_state=cfg.random_state)
    return [ctx.path(s) for s in (ATTR_OHE, ATTR_ATTR, ATTR_LOCI, ATTR_MASK)]


def _step_seqlets(cfg, quiet):
    from strandwise.cli.seqlets import run_seqlets

    ctx = _interpret_context(cfg, quiet)
    run_seqlets(ctx, motifs=cfg.motifs)
    return [ctx.path(".seqlets.bed")]


def _step_motifs(cfg, quiet):
    from strandwise.cli.motifs import run_motifs

    ctx = _interpret_context(cfg, quiet)
    run_motifs(ctx, motifs=cfg.motifs)
    return [p for p in (ctx.path("_modisco_results.h5"), ctx.path("_modisco")) if os.path.exists(p)]


def _step_report(cfg, quiet):
    state = _State(cfg.path(".pipeline.json")).data
    fc = fit_config(cfg)
    rows = []
    for step in STEPS[:-1]:
        rec = state.get(step, {})
        outs = "".join(
            f'<li><a href="{html.escape(os.path.relpath(o, cfg.out_dir))}">{html.escape(os.path.basename(o))}</a></li>'
            for o in rec.get("outputs", [])
        )
        rows.append(f"<tr><td>{step}</td><td>{rec.get('seconds', '')}</td><td><ul>{outs}</ul></td></tr>")
    tables = ""
    for split in ("valid", "test"):
        tsv = fc.path(f".{split}.performance.tsv")
        if os.path.exists(tsv):
            lines = [ln.split("\t") for ln in open(tsv).read().splitlines()]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in lines[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in ln) + "</tr>" for ln in lines[1:])
            tables += f"<h2>{split} chromosomes</h2><table><tr>{head}</tr>{body}</table>"
    extra = ""
    for label, suffix in (("seqlets", ".seqlets.bed"), ("annotated seqlets", ".seqlets_annotated.bed"),
                          ("seqlet clusters", ".seqlet_clusters.tsv"),
                          ("interpretation report (attributions, logos, seqlets, motifs)", ".interpret.html")):
        p = cfg.path(suffix)
        if os.path.exists(p):
            extra += f'<li><a href="{html.escape(os.path.basename(p))}">{label}</a></li>'
    pics = "".join(
        f'<figure><img src="{html.escape(os.path.basename(p))}" style="max-width:100%"><figcaption>'
        f"{html.escape(os.path.basename(p))}</figcaption></figure>"
        for p in (fc.path(".training.png"), fc.path(".test.profiles.png"), fc.path(".test.counts.png"))
        if os.path.exists(p)
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(cfg.name)} — strandwise pipeline</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;padding:3px 6px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>{html.escape(cfg.name)}</h1><p>assay {html.escape(cfg.assay)}, genome {html.escape(cfg.genome)}</p>"
        f"{tables}{pics}<h2>Interpretation</h2><ul>{extra or '<li>not run</li>'}</ul><h2>Steps</h2><table><tr><th>step</th><th>seconds</th><th>outputs</th></tr>{''.join(rows)}</table>"
        "</body></html>"
    )
    out = cfg.path(".report.html")
    atomic_write_text(out, page)
    return [out]


def _step_inputs(cfg, step):
    """(settings, input files) that determine a step's outputs."""
    fc_raw = json.dumps(cfg.fit, sort_keys=True)
    bw = cfg.signal_bigwigs() + cfg.control_bigwigs()
    model = os.path.join(cfg.out_dir, f"{cfg.name}.torch")
    return {
        "bigwig": ((cfg.assay, cfg.rename, cfg.mask_chroms), [cfg.genome, cfg.mask, *cfg.signals, *cfg.controls]),
        "peaks": ((cfg.genome_size, cfg.peak_caller, cfg.rename, cfg.mask_chroms), [cfg.genome, cfg.mask, *cfg.signals]),
        "negatives": ((cfg.random_state, json.dumps(cfg.fit.get("data") or {}, sort_keys=True)),
                      [cfg.genome, cfg.mask, cfg.peak_file()]),
        "fit": ((cfg.random_state, fc_raw), [cfg.genome, *bw, cfg.peak_file(), cfg.negatives_file()]),
        "evaluate": ((fc_raw,), [model, *bw]),
        "predict": ((fc_raw,), [model]),
        "attribute": ((cfg.random_state, json.dumps(cfg.attribution, sort_keys=True)), [model]),
        "seqlets": ((cfg.motifs,), [cfg.path(".attributions.attr.npz"), cfg.motifs]),
        "motifs": ((cfg.motifs,), [cfg.path(".attributions.attr.npz"), cfg.motifs]),
        "report": ((), [cfg.path(".pipeline.json")]),
    }[step]


RUNNERS = {
    "bigwig": _step_bigwig,
    "peaks": _step_peaks,
    "negatives": _step_negatives,
    "fit": _step_fit,
    "evaluate": _step_evaluate,
    "predict": _step_predict,
    "attribute": _step_attribute,
    "seqlets": _step_seqlets,
    "motifs": _step_motifs,
    "report": _step_report,
}


def run_pipeline(cfg: PipelineConfig, only: str | None = None, force: bool = False, quiet: bool = False):
    """Run the steps (or one), skipping those whose inputs did not change; returns a summary."""
    os.makedirs(cfg.out_dir, exist_ok=True)
    dump_config(cfg, cfg.path(".pipeline.config.json"))
    state = _State(cfg.path(".pipeline.json"))
    summary = []
    for step in STEPS:
        if only and step != only:
            continue
        if step in cfg.skip_steps:
            summary.append((step, "skipped", 0.0))
            continue
        if step == "peaks" and cfg.peaks:
            summary.append((step, "given", 0.0))
            continue
        if step == "negatives" and cfg.negatives:
            summary.append((step, "given", 0.0))
            continue
        settings, files = _step_inputs(cfg, step)
        fp = fingerprint(settings, files)
        expected = state.data.get(step, {}).get("outputs", [])
        if not force and step != "report" and expected and state.fresh(step, fp, expected):
            summary.append((step, "up to date", 0.0))
            if not quiet:
                print(f"[pipeline] {step}: up to date, skipped")
            continue
        if not quiet:
            print(f"[pipeline] {step}: running")
        t0 = time.perf_counter()
        try:
            outputs = RUNNERS[step](cfg, quiet)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PipelineStepError(
                f"step '{step}' failed: {msg} — fix this and re-run the same command to resume "
                f"(finished steps are skipped; `--step {step}` runs only this one)"
            ) from exc
        secs = time.perf_counter() - t0
        # fingerprint again: a step's own outputs may be another step's inputs
        state.record(step, fingerprint(*_step_inputs(cfg, step)), outputs, secs)
        summary.append((step, "ran", secs))
    if not quiet:
        print("\nstep        status       seconds")
        for step, status, secs in summary:
            print(f"{step:<11} {status:<12} {secs:8.1f}")
        print(f"\nreport: {cfg.path('.report.html')}")
    return summary


# --------------------------------------------------------------------------------- commands
def register(sub) -> None:
    p = sub.add_parser("pipeline", help="reads → bigWig → peaks → negatives → fit → evaluate → predict → report",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("config", help="pipeline config (see `strandwise pipeline-config`)")
    p.add_argument("--step", choices=STEPS, help="run only this step")
    p.add_argument("--force", action="store_true", help="rerun steps even if their inputs did not change")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_pipeline_command)

    q = sub.add_parser("pipeline-config", help="write a pipeline config from raw pointers")
    q.add_argument("-s", "--genome", required=True, help="genome FASTA")
    q.add_argument("-i", "--signals", nargs="+", required=True, help="read files (fragments, BEDPE, BAM)")
    q.add_argument("-c", "--controls", nargs="*", default=[], help="control read files")
    q.add_argument("-p", "--peaks", help="peaks (BED/narrowPeak); called from the reads if omitted")
    q.add_argument("--negatives", help="background loci (BED); GC-matched if omitted")
    q.add_argument("-m", "--motifs", help="motif database (MEME) for the interpretation steps")
    q.add_argument("-a", "--assay", default="atac", choices=sorted(ASSAYS))
    q.add_argument("-g", "--genome-size", type=float, default=2.7e9, help="MACS3 -g (default human)")
    q.add_argument("--training-chroms", nargs="+", help="default: upstream hg38 split")
    q.add_argument("--validation-chroms", nargs="+")
    q.add_argument("--test-chroms", nargs="+")
    q.add_argument("-n", "--name", required=True)
    q.add_argument("-o", "--output", required=True, help="config file to write (.json)")
    q.set_defaults(func=_write_pipeline_config)


def _run_pipeline_command(args) -> int:
    run_pipeline(load_pipeline_config(args.config), args.step, args.force, args.quiet)
    return 0


def _write_pipeline_config(args) -> int:
    for f in [args.genome, *args.signals, *args.controls, args.peaks, args.negatives, args.motifs]:
        if f is not None and not os.path.exists(f):
            raise FileNotFoundError(f"file not found: {f}")
    data = {}
    for key in ("training_chroms", "validation_chroms", "test_chroms"):
        if getattr(args, key):
            data[key] = getattr(args, key)
    cfg = PipelineConfig(
        name=args.name, output_dir=args.name, genome=os.path.abspath(args.genome),
        signals=[os.path.abspath(s) for s in args.signals], controls=[os.path.abspath(s) for s in args.controls],
        peaks=args.peaks and os.path.abspath(args.peaks), negatives=args.negatives and os.path.abspath(args.negatives),
        motifs=args.motifs and os.path.abspath(args.motifs), assay=args.assay, genome_size=args.genome_size,
        fit={"data": data} if data else {},
    )
    cfg.validate()
    dump_config(cfg, args.output)
    print(f"wrote {args.output}; run: strandwise pipeline {args.output}")
    return 0
