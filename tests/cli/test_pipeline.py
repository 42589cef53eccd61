"""The reads → report pipeline on the real yeast ATAC fragments (tiny model, CPU)."""

import json
import os


from strandwise.cli.main import main

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac"))


def _write(tmp_path, **over):
    cfg = {
        "name": "yeast",
        "output_dir": str(tmp_path / "out"),
        "genome": os.path.join(EXAMPLE, "sacCer3.fa.gz"),
        "signals": [os.path.join(EXAMPLE, "yeast_500k_SRR1822137.bedpe.gz")],
        "assay": "atac",
        "genome_size": 1.2e7,
        "peak_caller": "pileup",
        "mask": os.path.join(EXAMPLE, "exclusion.bed"),
        "mask_chroms": ["chrM"],
        "attribution": {"n_shuffles": 2, "max_loci": 12},
        "skip_steps": ["motifs"],
        "fit": {
            "data": {"training_chroms": ["chrII", "chrIII", "chrV"], "validation_chroms": ["chrVI"],
                     "test_chroms": ["chrIX"], "in_window": 514, "out_window": 300, "max_jitter": 16},
            "model": {"n_filters": 8, "n_layers": 3},
            "train": {"batch_size": 32, "max_epochs": 1},
        },
    }
    cfg.update(over)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    return path


def test_pipeline_runs_then_skips_then_reruns_only_what_changed(tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["pipeline", str(path)]) == 0
    out = tmp_path / "out"
    for f in ("yeast.bw", "yeast_peaks.narrowPeak", "yeast.negatives.bed", "yeast.torch",
              "yeast.valid.performance.tsv", "yeast.test.performance.tsv", "yeast.report.html",
              "yeast.attributions.attr.npz", "yeast.seqlets.bed", "yeast.interpret.html",
              "yeast.pipeline.json", "yeast.pipeline.config.json"):
        assert (out / f).exists(), f
    report = (out / "yeast.report.html").read_text()
    assert "test chromosomes" in report and "yeast.test.profiles.png" in report
    capsys.readouterr()

    assert main(["pipeline", str(path)]) == 0
    text = capsys.readouterr().out
    for step in ("bigwig", "peaks", "negatives", "fit", "evaluate", "predict", "attribute", "seqlets"):
        assert f"[pipeline] {step}: up to date, skipped" in text

    raw = json.loads(path.read_text())
    raw["fit"]["train"]["max_epochs"] = 2
    path.write_text(json.dumps(raw))
    assert main(["pipeline", str(path)]) == 0
    text = capsys.readouterr().out
    for step in ("bigwig", "peaks", "negatives"):
        assert f"[pipeline] {step}: up to date, skipped" in text
    for step in ("fit", "evaluate", "predict", "attribute", "seqlets"):
        assert f"[pipeline] {step}: running" in text
    assert len((out / "yeast.log").read_text().splitlines()) == 3

    # any step alone
    assert main(["pipeline", str(path), "--step", "report", "--quiet"]) == 0


def test_missing_macs3_names_step_and_extra(tmp_path, capsys, monkeypatch):
    import strandwise.io.reads as reads

    monkeypatch.setattr(reads, "macs3_available", lambda: False)
    path = _write(tmp_path, peak_caller="macs3")
    assert main(["pipeline", str(path), "--step", "peaks"]) == 2
    err = capsys.readouterr().err
    assert "step 'peaks' failed" in err and "strandwise[peaks]" in err and err.count("\n") == 1


def test_pipeline_config_command(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["pipeline-config", "-s", os.path.join(EXAMPLE, "sacCer3.fa.gz"), "-i",
                 os.path.join(EXAMPLE, "yeast_500k_SRR1822137.bedpe.gz"), "-a", "atac", "-g", "1.2e7",
                 "--test-chroms", "chrIV", "--validation-chroms", "chrXV", "chrXVI",
                 "--training-chroms", "chrI", "-n", "y", "-o", str(out)]) == 0
    cfg = json.loads(out.read_text())
    assert cfg["assay"] == "atac" and cfg["fit"]["data"]["test_chroms"] == ["chrIV"]
    assert main(["pipeline-config", "-s", "missing.fa", "-i", "x", "-n", "y", "-o", str(out)]) == 2
    assert "file not found: missing.fa" in capsys.readouterr().err
