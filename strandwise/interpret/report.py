"""A small HTML report builder: headings, text, linked PNGs and tables (with TSV links).

>>> rep = HTMLReport("yeast ATAC — what the model learned")
>>> rep.add_heading("Seqlets")
>>> rep.add_table(counts, columns=["motif", "n_seqlets"], tsv="NAME.motif_seqlet_count.tsv")
>>> rep.add_image("logos/locus0.png", caption="top locus")
>>> rep.write("out/report.html")

Paths to images and TSVs are written relative to the HTML file's folder so the folder can be moved
or served as it is. The file is written atomically.
"""

from __future__ import annotations

import html
import os
from typing import Iterable, Mapping, Sequence

from strandwise.io.atomic import atomic_write_text

__all__ = ["HTMLReport", "records_tsv", "write_tsv"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 0.5em 0 1.5em; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
"""


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def records_tsv(records: Iterable[Mapping], columns: Sequence[str]) -> str:
    """TSV text with a header line for ``records`` (dicts) restricted to ``columns``."""
    lines = ["\t".join(columns)]
    for r in records:
        lines.append("\t".join(_cell(r.get(c, "")) for c in columns))
    return "\n".join(lines) + "\n"


def write_tsv(records: Iterable[Mapping], path, columns: Sequence[str]) -> None:
    """Write ``records`` as a TSV with header (atomically)."""
    atomic_write_text(path, records_tsv(records, columns))


class HTMLReport:
    """Accumulates report sections and writes one self-contained HTML page.

    Parameters
    ----------
    title : str
    """

    def __init__(self, title: str):
        self.title = str(title)
        self._parts: list[tuple[str, tuple]] = []

    def add_heading(self, text: str, level: int = 2) -> "HTMLReport":
        if level not in (1, 2, 3, 4):
            raise ValueError(f"heading level must be 1–4; got {level}")
        self._parts.append(("heading", (text, level)))
        return self

    def add_text(self, text: str) -> "HTMLReport":
        self._parts.append(("text", (text,)))
        return self

    def add_image(self, path, caption: str = "") -> "HTMLReport":
        """Link a PNG (must exist when :meth:`write` runs)."""
        self._parts.append(("image", (os.fspath(path), caption)))
        return self

    def add_link(self, path, text: str | None = None) -> "HTMLReport":
        self._parts.append(("link", (os.fspath(path), text)))
        return self

    def add_table(self, records: Sequence[Mapping], columns: Sequence[str] | None = None,
                  max_rows: int = 50, tsv=None, image_columns: Sequence[str] = ()) -> "HTMLReport":
        """A table of the first ``max_rows`` records; ``tsv`` links the full table.

        ``image_columns`` holds PNG paths shown as thumbnails.
        """
        records = list(records)
        if columns is None:
            columns = list(records[0]) if records else []
        self._parts.append(("table", (records, list(columns), int(max_rows),
                                      None if tsv is None else os.fspath(tsv), tuple(image_columns))))
        return self

    def render(self, base_dir: str) -> str:
        """HTML text with paths made relative to ``base_dir``."""
        def rel(p):
            return html.escape(os.path.relpath(os.path.abspath(p), os.path.abspath(base_dir)).replace(os.sep, "/"))

        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
               f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for kind, args in self._parts:
            if kind == "heading":
                text, level = args
                out.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                out.append(f"<p>{html.escape(args[0])}</p>")
            elif kind == "link":
                path, text = args
                out.append(f"<p><a href='{rel(path)}'>{html.escape(text or os.path.basename(path))}</a></p>")
            elif kind == "image":
                path, caption = args
                if not os.path.exists(path):
                    raise FileNotFoundError(f"report image not found: {path}")
                out.append(f"<figure><a href='{rel(path)}'><img src='{rel(path)}'></a>"
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            elif kind == "table":
                records, columns, max_rows, tsv, image_cols = args
                out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
                for r in records[:max_rows]:
                    cells = []
                    for c in columns:
                        v = r.get(c, "")
                        if c in image_cols and v:
                            cells.append(f"<td><img src='{rel(v)}' style='height:60px'></td>")
                        else:
                            cells.append(f"<td>{html.escape(_cell(v))}</td>")
                    out.append("<tr>" + "".join(cells) + "</tr>")
                out.append("</table>")
                if len(records) > max_rows:
                    out.append(f"<p>{max_rows} of {len(records)} rows shown.</p>")
                if tsv is not None:
                    out.append(f"<p><a href='{rel(tsv)}'>full table (TSV)</a></p>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, path) -> str:
        """Write the page atomically to ``path`` and return the path."""
        path = os.fspath(path)
        atomic_write_text(path, self.render(os.path.dirname(os.path.abspath(path))))
        return path
