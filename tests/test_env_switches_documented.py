"""Every ``STRANDWISE_*`` environment variable the package reads is listed in the "Environment
switches" table of docs/kernels.md, and the table lists none that the package no longer reads."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAME = re.compile(r"STRANDWISE_[A-Z0-9_]*[A-Z0-9]")


def _source_names() -> set:
    names = set()
    for path in (ROOT / "strandwise").rglob("*.py"):
        names.update(NAME.findall(path.read_text()))
    return names


def _table_names() -> set:
    text = (ROOT / "docs" / "kernels.md").read_text()
    section = text.split("## Environment switches", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `STRANDWISE_")]
    return {n for ln in rows for n in NAME.findall(ln.split("|")[1])}


def test_every_environment_switch_is_in_the_table():
    src, table = _source_names(), _table_names()
    assert src, "no STRANDWISE_ variables found: the scan is broken"
    assert not src - table, f"read by the package but not documented: {sorted(src - table)}"
    assert not table - src, f"documented but no longer read: {sorted(table - src)}"
