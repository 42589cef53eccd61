"""pretrain / finetune / embed / vep through the command line on real data (tiny configs)."""

import json
import os

import numpy as np
import pytest
import torch

from strandwise.cli.main import main
from shared_data import SHARED_DATA, needs_shared_data

pytestmark = needs_shared_data

DATA = SHARED_DATA
YEAST = os.path.join(DATA, "yeast_genome_R64-1-1")
CHR = lambda n: os.path.join(YEAST, f"Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.{n}.fa.gz")
GUE = os.path.join(DATA, "gue_subset")


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _write(tmp_path, name, cfg):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return str(p)


TINY = {"variant": "ps", "d_model": 16, "n_layer": 1, "d_state": 4}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pt")
    cfg = {"name": "yeast", "output_dir": str(tmp / "run"),
           "data": {"fasta": [CHR("I"), CHR("VI")], "window": 64, "valid_chroms": ["I"]},
           "model": TINY,
           "train": {"max_steps": 8, "batch_size": 16, "validate_every": 4, "max_valid_windows": 32,
                     "validation_batch_size": 32, "checkpoint_every": 4}}
    p = _write(tmp, "pretrain.json", cfg)
    torch.set_num_threads(1)
    assert main(["pretrain", p, "--quiet"]) == 0
    return tmp / "run"


def test_pretrain_writes_model_history_and_resolved_config(pretrained):
    for f in ("model/config.json", "model/model.safetensors", "history.tsv", "last.ckpt", "yeast.config.json"):
        assert (pretrained / f).exists(), f
    rows = (pretrained / "history.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["step", "epoch", "train_loss", "val_loss"] and len(rows) == 3
    col = rows[0].split("\t").index("train_tokens_per_s")
    # 4 steps x 16 windows x 64 bp between validations, timed: a finite positive rate
    assert all(0 < float(r.split("\t")[col]) < 1e9 for r in rows[1:])
    resolved = json.loads((pretrained / "yeast.config.json").read_text())
    assert resolved["train"]["optim"]["lr"] == 8e-3 and resolved["train"]["optim"]["betas"] == [0.9, 0.95]


def test_finetune_from_scratch_pretrained_and_cnn_report_metrics(tmp_path, pretrained, capsys):
    t = os.path.join(GUE, "mouse", "3")
    data = {"train": f"{t}/train.csv", "valid": f"{t}/dev.csv", "test": f"{t}/test.csv", "max_train": 128, "max_eval": 64}
    for name, model in (("scratch", TINY), ("pre", {"pretrained": str(pretrained / "model")}), ("cnn", {"kind": "cnn"})):
        cfg = {"name": name, "output_dir": str(tmp_path / name), "data": data, "model": model,
               "train": {"max_epochs": 1, "batch_size": 32, "validation_batch_size": 64}}
        assert main(["finetune", _write(tmp_path, f"{name}.json", cfg)]) == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        for split in ("valid", "test"):
            assert m[split]["n"] == 64 and 0 <= m[split]["accuracy"] <= 1 and -1 <= m[split]["mcc"] <= 1
            assert 0 <= m[split]["auroc"] <= 1 and 0 <= m[split]["f1"] <= 1
        assert (tmp_path / name / "classifier" / "classifier.safetensors").exists()
    out = capsys.readouterr().out
    assert "test: accuracy" in out and "CNN baseline" in out and "pretrained" in out


def test_finetune_kfold_on_a_gb_test_only_split(tmp_path):
    cfg = {"name": "k", "output_dir": str(tmp_path / "k"),
           "data": {"train": os.path.join(DATA, "gb_human_nontata_promoters_test", "test.tsv"), "kfold": 5,
                    "fold": 2, "max_train": 96, "max_eval": 48},
           "model": {"kind": "cnn"}, "train": {"max_epochs": 1, "batch_size": 32}}
    assert main(["finetune", _write(tmp_path, "k.json", cfg), "--quiet"]) == 0
    m = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert m["test"]["n"] == 48 and m["valid"]["n"] == 48


def test_config_and_data_errors_are_one_line(tmp_path, capsys):
    bad = _write(tmp_path, "bad.json", {"data": {"train": "x.csv"}, "trian": {}})
    assert main(["finetune", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'trian'" in err and "did you mean 'train'" in err and "\n" not in err
    one = tmp_path / "one.csv"
    one.write_text("sequence,label\nACGT,1\nACGA,1\n")
    assert main(["finetune", _write(tmp_path, "one.json", {"data": {"train": str(one)}, "output_dir": str(tmp_path / "o")})]) == 2
    assert "only one class" in capsys.readouterr().err


def test_embed_fasta_bed_and_strings(tmp_path, pretrained, capsys):
    fa = tmp_path / "r.fa"
    fa.write_text(">a\nACGTACGTTTGACA\n>b\nGGGCCCATATAT\n")
    cfg = {"name": "emb", "output_dir": str(tmp_path / "e"), "model": {"pretrained": str(pretrained / "model")},
           "fasta": str(fa), "output": "tokens_strands", "format": "npz"}
    assert main(["embed", _write(tmp_path, "e.json", cfg), "--quiet"]) == 0
    assert json.loads((tmp_path / "e" / "emb.config.json").read_text())["output"] == "tokens_strands"
    z = np.load(tmp_path / "e" / "emb.npz")
    assert z["embeddings"].shape == (2, 14, 16, 2) and z["ids"].tolist() == ["a", "b"] and z["mask"].sum() == 26
    bed = tmp_path / "x.bed"
    bed.write_text("I\t1000\t1100\nI\t5000\t5050\n")
    cfg.update(fasta=None, bed=str(bed), genome=CHR("I"), output="projected", format="safetensors", name="p")
    assert main(["embed", _write(tmp_path, "p.json", cfg), "--quiet"]) == 0
    from safetensors import safe_open

    with safe_open(str(tmp_path / "e" / "p.safetensors"), "pt") as f:
        assert tuple(f.get_tensor("embeddings").shape) == (2, 512)
        assert json.loads(f.metadata()["ids"]) == ["I:1000-1100", "I:5000-5050"]
    # raw strings: pooled [N, d]; a character that is not A/C/G/T/N is a one-line error
    cfg.update(bed=None, genome=None, sequences=["ACGTTGCA", "ttgacn"], output="pooled", name="s")
    assert main(["embed", _write(tmp_path, "s.json", cfg), "--quiet"]) == 0
    from safetensors.numpy import load_file

    assert load_file(str(tmp_path / "e" / "s.safetensors"))["embeddings"].shape == (2, 16)
    cfg.update(sequences=["ACGT", "ACGU"])
    assert main(["embed", _write(tmp_path, "s.json", cfg), "--quiet"]) == 2
    assert "sequences[1]: characters 'U' are not A/C/G/T/N" in capsys.readouterr().err


def test_vep_command_outputs_and_bad_inputs(tmp_path, pretrained, capsys):
    from strandwise.io.records import SequenceStore

    st = SequenceStore(CHR("I"))
    lines = ["chrom\tpos\tref\talt\tsplit\tlabel"]
    for i, pos in enumerate([2000, 3000, 4000, 5000, 10, 230_210]):
        ref = st.fetch("I", pos - 1, pos)
        lines.append(f"I\t{pos}\t{ref}\t{'A' if ref != 'A' else 'C'}\t{'train' if i % 2 else 'test'}\t{i % 2}")
    tsv = tmp_path / "v.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    cfg = {"name": "v", "output_dir": str(tmp_path / "v"), "model": {"pretrained": str(pretrained / "model")},
           "variants": str(tsv), "fasta": CHR("I"), "length": 64, "window": 16}
    assert main(["vep", _write(tmp_path, "v.json", cfg)]) == 0
    out = capsys.readouterr().out
    assert "skipped 2" in out
    from safetensors.numpy import load_file

    tr = load_file(str(tmp_path / "v" / "train_embeds_combined.safetensors"))
    assert tr["concat_avg_ws"].shape == (2, 32) and tr["rc_concat_avg_ws"].shape == (2, 32)
    summary = json.loads((tmp_path / "v" / "vep_summary.json").read_text())
    assert summary["n_skipped"] == 2 and summary["n_kept"] == {"test": 2, "train": 2}
    assert json.loads((tmp_path / "v" / "v.config.json").read_text())["window"] == 16
    assert len((tmp_path / "v" / "skipped.tsv").read_text().splitlines()) == 3
    # a reference allele that disagrees with the FASTA: one-line error naming the line
    bad = tmp_path / "bad.tsv"
    ref = st.fetch("I", 2999, 3000)
    bad.write_text(f"chrom\tpos\tref\talt\nI\t3000\t{'G' if ref != 'G' else 'T'}\tA\n")
    cfg.update(variants=str(bad))
    assert main(["vep", _write(tmp_path, "b.json", cfg)]) == 2
    err = capsys.readouterr().err
    assert "line 2: I:3000" in err and "reference allele mismatch" in err
    mal = tmp_path / "mal.vcf"
    mal.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\nI\t3000\tx\n")
    cfg.update(variants=str(mal))
    assert main(["vep", _write(tmp_path, "m.json", cfg)]) == 2
    assert "mal.vcf:3: malformed VCF line" in capsys.readouterr().err


def test_pretrain_bf16_mixed_with_gradient_accumulation_and_checkpointing(tmp_path):
    cfg = {"name": "bf", "output_dir": str(tmp_path / "bf"),
           "data": {"fasta": [CHR("I"), CHR("VI")], "window": 64, "valid_chroms": ["I"]},
           "model": dict(TINY, variant="ph", gradient_checkpointing=True, gradient_checkpointing_blocks=1),
           "train": {"max_steps": 4, "batch_size": 8, "accumulate_grad_batches": 2, "precision": "bf16-mixed",
                     "validate_every": 2, "max_valid_windows": 16, "validation_batch_size": 16, "accelerator": "cpu"}}
    assert main(["pretrain", _write(tmp_path, "bf.json", cfg), "--quiet"]) == 0
    rows = [r.split("\t") for r in (tmp_path / "bf" / "history.tsv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [2, 4]  # optimizer steps, not micro-batches
    assert all(np.isfinite(float(r[3])) for r in rows)
    cfg_json = json.loads((tmp_path / "bf" / "model" / "config.json").read_text())
    assert cfg_json["rcps"] is False and cfg_json["gradient_checkpointing"] is True
    assert cfg_json["gradient_checkpointing_blocks"] == 1
    cfg["model"]["gradient_checkpointing_blocks"] = 3  # more than n_layer: one-line error
    cfg["output_dir"] = str(tmp_path / "bad")
    assert main(["pretrain", _write(tmp_path, "bad.json", cfg), "--quiet"]) == 2


def test_pretrain_from_a_bed_with_split_column_on_yeast(tmp_path, capsys):
    """BED intervals (4th column = split) on the real genome; Ph gets RC augmentation, PS does not."""
    from strandwise.cli.caduceus_config import PretrainConfig, load_command_config
    from strandwise.cli.pretrain import build_datasets

    bed = tmp_path / "iv.bed"
    bed.write_text("I\t1000\t3000\ttrain\nVI\t0\t4096\ttrain\nI\t100000\t100640\tvalid\n")
    cfg = {"name": "b", "output_dir": str(tmp_path / "b"),
           "data": {"fasta": [CHR("I"), CHR("VI")], "bed": "iv.bed", "window": 64, "stride": 128},
           "model": dict(TINY, variant="ph"),
           "train": {"max_steps": 2, "batch_size": 8, "validate_every": 2, "validation_batch_size": 16}}
    p = _write(tmp_path, "b.json", cfg)  # "iv.bed" is relative to the config's folder
    c = load_command_config(PretrainConfig, p)
    train, valid, test = build_datasets(c)
    assert (len(train), len(valid), len(test)) == (2000 // 128 + 1 + 4096 // 128, 5, 0)
    assert set(valid.windows.chrom) == {"I"} and valid.windows.start.tolist() == [100000 + 128 * k for k in range(5)]
    assert train.rc_aug and not valid.rc_aug
    ps = load_command_config(PretrainConfig, p, {"model": {"variant": "ps"}})
    assert not build_datasets(ps)[0].rc_aug
    assert main(["pretrain", p, "--quiet"]) == 0
    rows = (tmp_path / "b" / "history.tsv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split("\t")[0] == "2"
    resolved = json.loads((tmp_path / "b" / "b.config.json").read_text())
    assert resolved["data"]["bed"] == str(bed) and resolved["data"]["rc_aug"] is None
    bed.write_text("I\t1000\t3000\tpeak_1\n")
    assert main(["pretrain", p, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "iv.bed: interval 1 (I:1000-3000) has 4th column 'peak_1'" in err


def test_finetune_genomic_benchmarks_folder_resume_and_one_class_folder(tmp_path, capsys, monkeypatch):
    """GB download layout root/<split>/<class>/*.txt from real sequences; a run that crashes after
    epoch 0 and is resumed ends with the same weights as one uninterrupted run; a training folder
    with one class is a one-line error."""
    from safetensors.torch import load_file

    from strandwise.data.labelled import read_labelled_table
    from strandwise.train import caduceus_module

    nt = read_labelled_table(os.path.join(DATA, "gb_human_nontata_promoters_test", "test.tsv"))
    root = tmp_path / "gb"
    for split, off in (("train", 0), ("test", 40)):
        for name, k in (("negative", 0), ("positive", 1)):
            os.makedirs(root / split / name)
            seqs = [s for s, y in zip(nt.sequences, nt.labels) if y == k][off : off + (40 if split == "train" else 10)]
            for i, s in enumerate(seqs):
                (root / split / name / f"{i}.txt").write_text(s + "\n")
    cfg = {"name": "gb", "output_dir": str(tmp_path / "straight"), "data": {"root": "gb"}, "model": {"kind": "cnn"},
           "train": {"max_epochs": 2, "batch_size": 16}}
    assert main(["finetune", _write(tmp_path, "straight.json", cfg), "--quiet"]) == 0
    m = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert m["test"]["n"] == 20 and m["valid"]["n"] == 8 and m["steps"] == 8  # 72 train / 16 = 4 steps per epoch
    resolved = json.loads((tmp_path / "straight" / "gb.config.json").read_text())
    assert resolved["data"]["root"] == str(root) and resolved["train"]["optim"]["lr"] == 2e-3
    assert json.loads((tmp_path / "straight" / "classifier" / "classifier.json").read_text())["class_names"] == [
        "negative", "positive"]

    # the same run, crashing right after epoch 0's checkpoint, then --resume
    save = caduceus_module._Artifacts.on_train_epoch_end

    def crash(self, trainer, pl_module):
        save(self, trainer, pl_module)
        raise RuntimeError("simulated crash")

    p = _write(tmp_path, "crash.json", dict(cfg, output_dir=str(tmp_path / "crash")))
    monkeypatch.setattr(caduceus_module._Artifacts, "on_train_epoch_end", crash)
    assert main(["finetune", p, "--quiet"]) == 2
    assert "simulated crash" in capsys.readouterr().err
    monkeypatch.undo()
    assert (tmp_path / "crash" / "last.ckpt").exists() and not (tmp_path / "crash" / "metrics.json").exists()
    assert main(["finetune", p, "--quiet", "--resume"]) == 0
    hist = (tmp_path / "crash" / "history.tsv").read_text().splitlines()
    assert json.loads((tmp_path / "crash" / "metrics.json").read_text())["steps"] == 8
    assert [r.split("\t")[0] for r in hist[1:]] == ["0", "1"]
    a = load_file(str(tmp_path / "crash" / "classifier" / "classifier.safetensors"))
    b = load_file(str(tmp_path / "straight" / "classifier" / "classifier.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)

    # a labels folder with one class
    import shutil

    shutil.rmtree(root / "train" / "positive")
    assert main(["finetune", p, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "found 1 class folder(s) ['negative']" in err and "\n" not in err
