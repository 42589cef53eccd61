import json
import os

import pytest

from strandwise._config import ConfigError
from strandwise.data.config import ProfileDataConfig, check_signal_groups
from strandwise.data.splits import (
    HG38_TEST_CHROMS,
    HG38_TRAINING_CHROMS,
    HG38_VALIDATION_CHROMS,
    canonical_split,
    check_splits_disjoint,
)

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
BASE = {"sequences": "g.fa", "signals": ["a.bw"], "loci": "p.bed", "negatives": "n.bed"}


def test_defaults_are_upstream():
    cfg = ProfileDataConfig.from_dict(BASE)
    assert (cfg.in_window, cfg.out_window, cfg.max_jitter) == (2114, 1000, 500)
    assert cfg.reverse_complement is True and cfg.negative_ratio == 0.25 and cfg.random_state == 0
    assert cfg.outlier_threshold == 1.2 and cfg.outlier_quantile == 0.99
    assert cfg.validation_chroms == ["chr8", "chr20"] and cfg.test_chroms == ["chr1", "chr3", "chr6"]
    assert len(HG38_TRAINING_CHROMS) == 19 and "chr9" in HG38_TRAINING_CHROMS
    check_splits_disjoint(HG38_TRAINING_CHROMS, HG38_VALIDATION_CHROMS, HG38_TEST_CHROMS)


def test_example_config_loads_and_resolves():
    with open(os.path.join(EXAMPLE, "config.json")) as fh:
        cfg = ProfileDataConfig.from_dict(json.load(fh)["data"]).resolve_paths(EXAMPLE)
    assert os.path.exists(cfg.sequences) and all(os.path.exists(p) for p in cfg.signals)
    assert cfg.chroms("test") == ["chrIV"] and cfg.chroms("validation") == ["chrXV", "chrXVI"]
    assert "chrM" not in cfg.chroms("train") and len(cfg.chroms("train")) == 13
    assert cfg.signal_spec == (cfg.signals, [1])


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'max_jiter' in data \(did you mean 'max_jitter'\?\)"):
        ProfileDataConfig.from_dict({**BASE, "max_jiter": 3})


def test_splits_must_be_disjoint():
    with pytest.raises(ConfigError, match="chrIV in both training and test"):
        ProfileDataConfig.from_dict({**BASE, "training_chroms": ["chrI", "chrIV"],
                                     "validation_chroms": ["chrXV"], "test_chroms": ["chrIV"]})
    with pytest.raises(ValueError, match="chr1 in both validation and test"):
        check_splits_disjoint(["chr2"], ["chr1"], ["chr1", "chr3"])
    assert canonical_split("validation") == "valid"
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        canonical_split("dev")


def test_signals_vs_signal_groups():
    with pytest.raises(ConfigError, match=r"data.signals and data.signal_groups disagree: the tracks "
                                          r"give groups \[1, 2\] \(3 channels\) but"):
        ProfileDataConfig.from_dict({**BASE, "signals": ["a.bw", ["b.+.bw", "b.-.bw"]],
                                     "signal_groups": [2, 1]})
    cfg = ProfileDataConfig.from_dict({**BASE, "signals": ["a.bw", ["b.+.bw", "b.-.bw"]]})
    check_signal_groups(cfg, [1, 2])
    with pytest.raises(ConfigError, match=r"data.signals and model.signal_groups disagree.*\[1, 1\]"):
        check_signal_groups(cfg, [1, 1])
    with pytest.raises(ConfigError, match="0 control track"):
        check_signal_groups(cfg, [1, 2], n_control_tracks=2)
    with pytest.raises(ConfigError, match=r"data.signals: signal group 0 is empty"):
        ProfileDataConfig.from_dict({**BASE, "signals": [[]]})


def test_value_checks():
    with pytest.raises(ConfigError, match="needs data.negatives"):
        ProfileDataConfig.from_dict({**BASE, "negatives": None})
    ProfileDataConfig.from_dict({**BASE, "negatives": None, "negative_ratio": 0})
    with pytest.raises(ConfigError, match="data.out_window .* cannot exceed"):
        ProfileDataConfig.from_dict({**BASE, "in_window": 100, "out_window": 200})
    with pytest.raises(ConfigError, match="data.max_jitter must be an int >= 0"):
        ProfileDataConfig.from_dict({**BASE, "max_jitter": -5})
    with pytest.raises(ConfigError, match="data.sequences is required"):
        ProfileDataConfig.from_dict({"signals": ["a.bw"], "loci": "p.bed"})
