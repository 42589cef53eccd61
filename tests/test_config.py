import dataclasses
import json

import pytest

from strandwise._config import ConfigError, dump_config, from_dict, load_config_file


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    epochs: int = 5

    def validate(self):
        if self.epochs < 1:
            raise ConfigError("epochs must be >= 1")


@dataclasses.dataclass
class Outer:
    name: str = "run"
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_nested_build_and_defaults():
    cfg = from_dict(Outer, {"inner": {"lr": 0.5}})
    assert cfg.inner.lr == 0.5 and cfg.inner.epochs == 5 and cfg.name == "run"


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'epoch' in config.inner \(did you mean 'epochs'\?\)"):
        from_dict(Outer, {"inner": {"epoch": 3}})


def test_validate_runs_on_nested():
    with pytest.raises(ConfigError, match="epochs must be"):
        from_dict(Outer, {"inner": {"epochs": 0}})


def test_file_round_trip(tmp_path):
    p = tmp_path / "c.json"
    dump_config(from_dict(Outer, {"name": "x"}), p)
    assert json.loads(p.read_text())["inner"]["epochs"] == 5
    assert load_config_file(p)["name"] == "x"
    y = tmp_path / "c.yaml"
    y.write_text("name: y\ninner:\n  lr: 2\n")
    assert from_dict(Outer, load_config_file(y)).inner.lr == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(bad)
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.json")


def test_atomic_writes_get_umask_permissions(tmp_path):
    import os

    from strandwise.io.atomic import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (os.stat(tmp_path / "a.txt").st_mode & 0o777) == 0o644
