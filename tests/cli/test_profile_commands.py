"""fit → evaluate → predict through the command line, on the bundled real yeast ATAC-seq data."""

import json
import os

import numpy as np

from strandwise.cli.main import main

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")


def _config(tmp_path, **over):
    cfg = json.load(open(os.path.join(EXAMPLE, "config.json")))
    data = cfg["data"]
    for key in ("sequences", "loci", "negatives"):
        data[key] = os.path.abspath(os.path.join(EXAMPLE, data[key]))
    data["signals"] = [os.path.abspath(os.path.join(EXAMPLE, s)) for s in data["signals"]]
    data["exclusion_lists"] = [os.path.abspath(os.path.join(EXAMPLE, s)) for s in data["exclusion_lists"]]
    data.update(training_chroms=["chrI", "chrII", "chrIII", "chrV"], validation_chroms=["chrVI"],
                test_chroms=["chrIX"], in_window=514, out_window=300, max_jitter=16)
    cfg["model"] = {"n_filters": 8, "n_layers": 3}
    cfg["train"] = {"batch_size": 32, "max_epochs": 2, "optimizer": {"n_warmup_epochs": 1}}
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["name"] = "tiny"
    for k, v in over.items():
        cfg[k] = v
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_fit_evaluate_predict_on_real_yeast_data(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["fit", str(cfg), "--quiet"]) == 0
    run = tmp_path / "run"
    for f in ("tiny.torch", "tiny.final.torch", "tiny.log", "tiny.training.png", "tiny.config.json", "last.ckpt"):
        assert (run / f).exists(), f
    resolved = json.loads((run / "tiny.config.json").read_text())
    assert resolved["train"]["optimizer"]["muon_lr"] == 0.025  # defaults merged into the record
    assert len((run / "tiny.log").read_text().splitlines()) == 3

    # --resume after completion trains nothing more and keeps the log
    assert main(["fit", str(cfg), "--quiet", "--resume"]) == 0
    assert len((run / "tiny.log").read_text().splitlines()) == 3

    assert main(["evaluate", str(cfg), "--quiet"]) == 0
    tsv = (run / "tiny.test.performance.tsv").read_text().splitlines()
    header = tsv[0].split("\t")
    assert header[:3] == ["group", "profile_mnll", "profile_jsd"] and "auroc" in header
    row = dict(zip(header, tsv[1].split("\t")))
    assert 0.0 <= float(row["auroc"]) <= 1.0 and float(row["profile_jsd"]) <= np.log(2)
    assert (run / "tiny.test.profiles.png").exists() and (run / "tiny.test.counts.png").exists()

    bed = tmp_path / "loci.bed"
    bed.write_text("chrIX\t100000\t100200\nchrIX\t200000\t200300\n")
    assert main(["predict", str(cfg), "--loci", str(bed), "--output", str(tmp_path / "pl"), "--quiet", "--rc-average"]) == 0
    counts = (tmp_path / "pl.counts.tsv").read_text().splitlines()
    assert counts[0] == "chrom\tstart\tend\tlogcount_group0" and len(counts) == 3
    assert counts[1].split("\t")[:3] == ["chrIX", str(100100 - 150), str(100100 + 150)]

    assert main(["predict", str(cfg), "--chroms", "chrIX", "--quiet"]) == 0
    import pyBigWig

    bw = pyBigWig.open(str(run / "tiny.predictions.yeast_atac.insertions.bw"))
    assert bw.chroms("chrIX") == 439888
    vals = np.nan_to_num(np.array(bw.values("chrIX", 0, 439888)))
    assert (vals > 0).mean() > 0.99  # every position of the chromosome predicted
    bw.close()


def test_config_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    cfg = _config(tmp_path)
    raw = json.loads(cfg.read_text())
    raw["train"]["max_epoch"] = 3
    cfg.write_text(json.dumps(raw))
    assert main(["fit", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'max_epoch'" in err and "max_epochs" in err
    assert main(["fit", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
    raw = json.loads(_config(tmp_path).read_text())
    raw["data"]["signal_groups"] = [2]
    cfg.write_text(json.dumps(raw))
    assert main(["fit", str(cfg)]) == 2
    assert "disagree" in capsys.readouterr().err
    raw = json.loads(_config(tmp_path).read_text())
    raw["model"]["trimming"] = 50
    cfg.write_text(json.dumps(raw))
    assert main(["fit", str(cfg)]) == 2
    assert "out_window=300" in capsys.readouterr().err
