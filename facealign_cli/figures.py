"""Measured figures, in one place: ``facealign_cli/data/figures.json``.

The rates that ``--help``, ``README.md``, ``docs/batch.md`` and ``benchmarks/README.md`` state
(what the quality filter drops, what the detector finds, ...) are measured by scripts, never
typed by hand: each measuring script (``scripts/fit_quality.py --write-figures``,
``scripts/tune_detector.py --write-figures``) replaces its section of the JSON file with the
figures it measured, the command that measured them and the date (:func:`write_section`), then
the documents' generated spans are rewritten from the file (:func:`regenerate`,
``scripts/update_figures.py``). A span is the text between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->``; NAME is a key of :data:`SPANS`. A span whose markers stand on lines
of their own is a paragraph (wrapped at 100 columns); one inside a line stays on that line.
``tests/test_figures.py`` checks that every span and the ``--min-quality`` help agree with the
file.

Standard library only: ``facealign --help`` reads it (:func:`quality_help`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import textwrap
from collections.abc import Callable
from datetime import date
from functools import lru_cache
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "data" / "figures.json"
#: Where the documents cite the figures' one generated table.
TABLE_REF = "benchmarks/README.md, 'Measured figures'"

_SPAN = re.compile(r"<!-- figures:([\w-]+) -->(.*?)<!-- /figures:\1 -->", re.S)


def load(path: Path = FIGURES) -> dict:
    """The figures file as a dict: ``{section: {"command": str, "date": "YYYY-MM-DD", ...}}``.

    Raises:
        OSError, ValueError: the file is missing or not JSON.
    """
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_section(name: str, values: dict, command: str, path: Path = FIGURES,
                  when: date | None = None) -> dict:
    """Replace section ``name`` of the figures file by ``values`` with the measuring
    ``command`` and the date (``when``, default today), atomically; returns the whole file."""
    figs = load(path)
    figs[name] = {"command": command, "date": (when or date.today()).isoformat(), **values}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(figs, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return figs


def pct(part: float, whole: float) -> str:
    """``part / whole`` in percent, one decimal below 10 % and none above (``"0.5 %"``,
    ``"48 %"``)."""
    p = 100.0 * part / whole if whole else 0.0
    return f"{p:.1f} %" if p < 10 else f"{p:.0f} %"


# -- the spans -------------------------------------------------------------------------------

def _quality_short(figs: dict) -> str:
    q = figs["quality"]
    a = q["afw"]
    return (f"drops {a['false_dropped']} of the {a['false']} false faces "
            f"({pct(a['false_dropped'], a['false'])}) and {a['faces_dropped']} of the "
            f"{a['faces']} real ones ({pct(a['faces_dropped'], a['faces'])}) that the detector "
            f"finds on the AFW photos")


@lru_cache(maxsize=4)
def quality_help(path: Path = FIGURES) -> str:
    """The measured part of ``--min-quality``'s help (``""`` when the file cannot be read; read
    once per process)."""
    try:
        figs = load(path)
        q = figs["quality"]
        return (f"Measured with the {q['weights']} weights ({q['date']}), the default "
                f"{_quality_short(figs)}; all figures: {TABLE_REF}.")
    except (OSError, ValueError, KeyError):
        return ""


def _quality_readme(figs: dict) -> str:
    return f"default {figs['quality']['min_quality']}, which {_quality_short(figs)}"


def _quality_docs(figs: dict) -> str:
    q = figs["quality"]
    a, h, s = q["afw"], q["helen"], q["min_score_0.7"]
    kept = ("none" if a["annotated_found_kept"] == a["annotated_found"] else
            f"{a['annotated_found'] - a['annotated_found_kept']}")
    return (
        f"On the AFW photos' detections (detector policy `{q['policy']}` at `--min-score` "
        f"{q['min_score']}) the default `--min-quality` {q['min_quality']} drops "
        f"{a['false_dropped']} of the {a['false']} false faces "
        f"({pct(a['false_dropped'], a['false'])}) and {a['faces_dropped']} of the {a['faces']} "
        f"real ones ({pct(a['faces_dropped'], a['faces'])}; {kept} of the "
        f"{a['annotated_found']} annotated faces the detector finds); on the 300-W HELEN crops "
        f"{h['faces_dropped']} of {h['faces']} faces ({pct(h['faces_dropped'], h['faces'])}) "
        f"and {h['false_dropped']} of {h['false']} false ones "
        f"({pct(h['false_dropped'], h['false'])}): {a['false_per_photo_kept']:.3f} false faces "
        f"per AFW photo are left, against {a['false_per_photo']:.3f} without the filter. For "
        f"comparison, `--min-score 0.7` keeps {s['false_kept'] or 'none'} of the false faces "
        f"but only "
        f"{s['afw_faces_kept_pct']} % of the real ones "
        f"({s['annotated_found_kept']} of the {a['annotated_found']} annotated faces). ROC AUC "
        f"of held-out predictions (5-fold, grouped by photo) against the detector score alone: "
        f"{q['auc']['afw_default']['quality']} against {q['auc']['afw_default']['score']} on "
        f"the AFW photos' detections. Measured with the {q['weights']} weights on {q['date']} "
        f"by `{q['command']}`; every figure: {TABLE_REF}.")


def _detector_row(figs: dict, set_name: str, policy: str) -> dict:
    return figs["detector"]["sets"][set_name][policy]


def _detector_readme(figs: dict) -> str:
    r = _detector_row(figs, "afw", figs["detector"]["default"])
    return (f"{r['found']} of {r['faces']} annotated faces at {r['cpu_ms']} ms CPU per "
            f"1024-px photo")


def _detector_docs(figs: dict) -> str:
    d, q = figs["detector"], figs["quality"]
    new, old = _detector_row(figs, "afw", d["default"]), _detector_row(figs, "afw", d["previous"])
    a, s = q["afw"], q["min_score_0.7"]
    return (
        f"On the {d['sets']['afw']['photos']} AFW photos it finds {new['found']} of the "
        f"{new['faces']} annotated faces at {new['cpu_ms']} ms of detector CPU per 1024-px photo "
        f"(the previous policy, with short-range tiles at 0.65: {old['found']} at "
        f"{old['cpu_ms']} ms) with {new['false_per_image']:.3f} false detections per photo "
        f"before the quality filter (previous policy {old['false_per_image']:.3f}). Its false "
        f"detections (hands, hair, the back of a head, parts of faces) score "
        f"{a['false_score_min']}–{a['false_score_max']} on those photos, median "
        f"{a['false_score_median']}: `--min-score 0.7` drops them all but also "
        f"{a['annotated_found'] - s['annotated_found_kept']} of the {a['annotated_found']} "
        f"annotated faces; the quality filter below drops about half of them and almost no "
        f"real face. Measured by `{d['command']}` ({d['date']}) and by "
        f"`scripts/fit_quality.py` (the scores); every figure: {TABLE_REF}.")


def _flatten(prefix: str, value) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(f"{prefix}.{k}", v)]
    if isinstance(value, list):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, str(value))]


def _table(figs: dict) -> str:
    lines = []
    for name, sec in figs.items():
        if not isinstance(sec, dict):
            continue
        lines += ["", f"**{name}**: `{sec['command']}` ({sec['date']})", "",
                  "| figure | value |", "| --- | --- |"]
        lines += [f"| `{k[1:]}` | {v} |" for key, val in sec.items()
                  if key not in ("command", "date") for k, v in _flatten("", {key: val})]
    return "\n".join(lines[1:])


#: Span name -> function of the figures dict giving the span's text.
SPANS: dict[str, Callable[[dict], str]] = {
    "quality-readme": _quality_readme,
    "quality-docs": _quality_docs,
    "detector-readme": _detector_readme,
    "detector-docs": _detector_docs,
    "table": _table,
}


#: A line starting so would open a list, a heading or a quote in Markdown.
_BLOCK_START = re.compile(r"[-+*>#]|\d+[.)]( |$)|<!--")


def _wrap(text: str) -> str:
    """``text`` wrapped at 100 columns, no line starting a Markdown block."""
    lines: list[str] = []
    for line in textwrap.wrap(text, 100, break_on_hyphens=False, break_long_words=False):
        if lines and _BLOCK_START.match(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(lines)


def regenerate(text: str, figs: dict) -> str:
    """``text`` with every figures span rewritten from ``figs`` (module docstring).

    Raises:
        KeyError: a span names no entry of :data:`SPANS`.
    """
    def fill(m: re.Match) -> str:
        name, old = m.group(1), m.group(2)
        new = SPANS[name](figs)
        if old.startswith("\n"):  # a paragraph (or table) of its own
            if name != "table":
                new = _wrap(new)
            new = f"\n{new}\n"
        return f"<!-- figures:{name} -->{new}<!-- /figures:{name} -->"
    return _SPAN.sub(fill, text)


def span_names(text: str) -> list[str]:
    """The names of the figures spans in ``text``, in order."""
    return [m.group(1) for m in _SPAN.finditer(text)]


#: The documents with figures spans, relative to the repository root.
DOCUMENTS = ("README.md", "docs/batch.md", "benchmarks/README.md")


def update_documents(root: Path, figs: dict | None = None, *, write: bool = True) -> list[str]:
    """Rewrite the figures spans of :data:`DOCUMENTS` under ``root`` from ``figs`` (default:
    the figures file); returns the documents that were out of date (and, with ``write``, are
    no longer)."""
    figs = load() if figs is None else figs
    stale = []
    for rel in DOCUMENTS:
        path = Path(root) / rel
        text = path.read_text(encoding="utf-8")
        new = regenerate(text, figs)
        if new != text:
            stale.append(rel)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale
