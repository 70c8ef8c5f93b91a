"""Reports of ``facealign evaluate``: rich tables on the terminal, Markdown, JSON and CED plots.

Everything here formats figures computed by :mod:`facealign_cli.evaluation.protocols` (with the
metrics of :mod:`facealign_cli.evaluation.metrics`); nothing is computed from images. Units: NME
in percent, head pose in degrees, AUC as a fraction in [0, 1], failure rates as percentages of
the annotated faces (misses of the detector count as failures).

Tables are built once as :class:`Table` (title, header, rows, notes) and rendered either with
rich or as Markdown, so the terminal and the Markdown file always show the same numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facealign_cli.defaults import EVALUATE_POSE_CONVENTION, POSE_FORMULAS
from facealign_cli.evaluation.datasets import YAW_SPLITS
from facealign_cli.evaluation.metrics import BIN_LABELS, ced_curve, ced_summary, yaw_bin_index
from facealign_cli.evaluation.occlusion import OCCLUDER_KINDS

PROTOCOL_TITLES = {
    "gt-crops": "ground-truth crops (3DDFA protocol)",
    "detector": "detector in the loop (full pipeline on the 450x450 images)",
}
SPLIT_LABELS = {"fit": "fit yaw", "aflw": "AFLW yaw"}


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed (``pip install 'facealign-cli[plot]'``)."""


@dataclass
class Table:
    """A table independent of the renderer.

    Attributes:
        title: one line.
        header: column names.
        rows: rows of cell strings (same length as ``header``).
        notes: lines printed under the table.
    """

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _f(x, nd: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _pct(x, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:+.1f}%" if signed else f"{100 * x:.1f}%"


def _labels(methods: dict) -> dict:
    return {k: v.get("label", k) for k, v in methods.items()}


def _crop_notes(methods: dict) -> list[str]:
    """One note naming each method's crop rule (``info["crop"]``), if the methods record it."""
    crops = [f"{v.get('label', k)}: {v['crop']}" for k, v in methods.items() if "crop" in v]
    return ["crops: " + "; ".join(crops)] if crops else []


def _diff_label(keys: list[str], labels: dict) -> str:
    return f"Δ {labels[keys[0]]} − {labels[keys[1]]}"


# ---------------------------------------------------------------------------------------------
# AFLW2000-3D tables
# ---------------------------------------------------------------------------------------------

def _nme_rows(block: dict, keys: list[str], labels: dict, splits: list[str],
              with_misses: bool) -> list[list[str]]:
    rows = []
    for s in splits:
        for k in keys + (["difference"] if "difference" in block else []):
            d = k == "difference"
            f2 = block[k]["nme_2d"]
            sp = f2["splits"][s]
            name = _diff_label(keys, labels) if d else labels[k]
            counts = "" if d else " (" + "/".join(str(c) for c in sp["counts"]) + ")"
            row = [name, SPLIT_LABELS[s] + counts]
            row += [_f(b, signed=d) for b in sp["bins"]]
            row += [_f(sp["mean"], signed=d), _f(block[k]["nme_3d"]["splits"][s]["mean"], signed=d)]
            ced = f2["ced"]
            row += [_f(ced["auc_7"], 3, signed=d), _pct(ced["fr_7"], signed=d),
                    _pct(ced["fr_10"], signed=d)]
            if with_misses:
                row.append("" if d else "/".join(str(m) for m in sp["misses"]))
            rows.append(row)
    return rows


def aflw2000_tables(doc: dict) -> list[Table]:
    """Tables for the document written by ``facealign evaluate aflw2000-3d``.

    Args:
        doc: ``{"settings": ..., "methods": {key: {"label": ...}}, "results": figures}`` (see
            :func:`facealign_cli.evaluation.protocols.summarise_aflw2000`).
    """
    res, methods = doc["results"], doc["methods"]
    keys = list(methods)
    labels = _labels(methods)
    splits = doc["settings"]["yaw_splits"]
    tables = []
    header = ["Method", "Yaw split (n/bin)", *BIN_LABELS, "Mean", "3D NME", "AUC@7",
              "FR>7%", "FR>10%"]
    for proto in ("gt-crops", "detector"):
        if proto not in res:
            continue
        block = res[proto]
        det = proto == "detector"
        t = Table(f"AFLW2000-3D NME (%) — {PROTOCOL_TITLES[proto]}",
                  header + (["Misses/bin"] if det else []),
                  _nme_rows(block, keys, labels, splits, det))
        t.notes.append("Mean = unweighted mean of the three bin means; 3D NME = mean of bins, "
                       "x/y/z after removing each set's mean z; AUC@7 and FR on all images.")
        t.notes += _crop_notes(methods)
        if det:
            dd = block["detection"]
            t.notes.append(
                f"detected {dd['detected']}/{dd['faces']} annotated faces, {dd['misses']} "
                f"missed (IoU with the 68-landmark box < {dd['iou_threshold']}); NME over "
                "detected faces, misses count as failures in AUC/FR.")
        tables.append(t)
    pose_rows = []
    for proto in ("gt-crops", "detector"):
        if proto not in res:
            continue
        for k in keys + (["difference"] if "difference" in res[proto] else []):
            d = k == "difference"
            p = res[proto][k]["pose"]
            pose_rows.append([_diff_label(keys, labels) if d else labels[k], proto,
                              _f(p["yaw"], signed=d), _f(p["pitch"], signed=d),
                              _f(p["roll"], signed=d), _f(p["mean"], signed=d),
                              "" if d else str(p["count"])])
    if pose_rows:
        tables.append(Table("AFLW2000-3D head pose MAE (degrees)",
                            ["Method", "Protocol", "Yaw", "Pitch", "Roll", "Mean", "n"],
                            pose_rows,
                            ["faces whose ground-truth yaw, pitch and roll lie within ±99°; "
                             "angles in the benchmark's convention, "
                             f"{EVALUATE_POSE_CONVENTION} (Pose_Para: "
                             f"{POSE_FORMULAS[EVALUATE_POSE_CONVENTION]}), not the "
                             "yaw-first default of facealign's outputs"]))
    if "occlusion" in res:
        o = res["occlusion"]
        rows = []
        for k in keys + (["difference"] if "difference" in o else []):
            d = k == "difference"
            r = [_diff_label(keys, labels) if d else labels[k], _f(o[k]["clean"]["mean"],
                                                                    signed=d)]
            for kind in OCCLUDER_KINDS:
                m = o[k][kind]["nme_2d"]["splits"]["fit"]["mean"]
                r.append(f"{_f(m, signed=d)} ({_f(o[k][kind]['increase'], signed=True)})")
            rows.append(r)
        cov = ", ".join(f"{kind} {_pct(o['coverage'][kind])}" for kind in OCCLUDER_KINDS)
        tables.append(Table(
            "AFLW2000-3D occlusion robustness — NME (%), mean of fit-yaw bins "
            "(increase over clean)",
            ["Method", "Clean", *OCCLUDER_KINDS], rows,
            [f"ground-truth crops with one synthetic occluder per image (seed {o['seed']}); "
             f"mean part of the 68-landmark box covered: {cov}."]))
    return tables


def landmarks68_tables(doc: dict) -> list[Table]:
    """Tables for the document written by ``facealign evaluate landmarks68``."""
    res, methods = doc["results"], doc["methods"]
    keys = list(methods)
    labels = _labels(methods)
    rows = []
    for k in keys + (["difference"] if "difference" in res else []):
        d = k == "difference"
        b, io = res[k]["nme_box"], res[k]["nme_io"]
        rows.append([_diff_label(keys, labels) if d else labels[k],
                     _f(b["mean"], signed=d), _f(b["median"], signed=d),
                     _f(io["mean"], signed=d), _f(io["median"], signed=d),
                     _f(b["ced"]["auc_7"], 3, signed=d), _pct(b["ced"]["fr_7"], signed=d),
                     _pct(b["ced"]["fr_10"], signed=d), "" if d else str(b["n"]),
                     "" if d else str(b["misses"])])
    det = res["detection"]
    return [Table("68-landmark NME (%) — detector in the loop",
                  ["Method", "NME box mean", "median", "NME inter-ocular mean", "median",
                   "AUC@7 (box)", "FR>7%", "FR>10%", "Faces", "Misses"], rows,
                  [f"{det['faces']} annotated faces in {det['images']} images; "
                   f"{det['detected']} matched to a detection (IoU >= {det['iou_threshold']}), "
                   f"{det['misses']} missed"
                   + (f", {det['degenerate']} degenerate annotation(s) left out (not misses)"
                      if det.get("degenerate") else "")
                   + ". box = sqrt(w·h) of the ground-truth 68-point box; "
                   "inter-ocular = outer eye corners (points 36, 45). AUC/FR count misses as "
                   "failures.", *_crop_notes(methods)])]


# ---------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------

#: ASCII forms of the non-ASCII characters of the tables, for streams that cannot encode them.
ASCII_FORMS = {"—": "-", "–": "-", "−": "-", "Δ": "d", "°": " deg", "×": "x", "±": "+-",
               "·": "*", "…": "...", "≤": "<=", "≥": ">=", "√": "sqrt"}


def encodable(text: str, encoding: str | None) -> str:
    """``text`` as a stream of ``encoding`` can hold it: unchanged when it encodes, else each
    character it cannot encode in its ASCII form (:data:`ASCII_FORMS`) or as ``?``.

    Args:
        text: any text.
        encoding: the stream's encoding (None or unknown: UTF-8 / ASCII).
    """
    enc = encoding or "utf-8"
    try:
        text.encode(enc)
        return text
    except LookupError:
        enc = "ascii"
    except UnicodeEncodeError:
        pass
    out = []
    for c in text:
        try:
            c.encode(enc)
        except UnicodeEncodeError:
            c = ASCII_FORMS.get(c, "?")
        out.append(c)
    return "".join(out)


class _EncodableStream:
    """A text stream that writes to ``stream`` only what its encoding can hold
    (:func:`encodable`): a table printed under ``LC_ALL=C`` or ``PYTHONIOENCODING=ascii``
    never fails on a ``Δ`` or a ``°``."""

    def __init__(self, stream):
        self._stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        return self._stream.write(encodable(text, self.encoding))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


def print_tables(tables: list[Table], console=None) -> None:
    """Print tables with rich (``console`` default: a stdout console; characters stdout's
    encoding cannot hold are printed in an ASCII form, see :func:`encodable`)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable

    if console is None:
        import sys

        out = _EncodableStream(sys.stdout)
        # piped output: rich would wrap at 80 columns; the tables need about 130
        console = Console(file=out) if out.isatty() else Console(file=out, width=160)
    for t in tables:
        rt = RichTable(title=t.title, box=box.SIMPLE_HEAD, title_justify="left",
                       caption="\n".join(t.notes) or None, caption_justify="left")
        for i, h in enumerate(t.header):
            rt.add_column(h, justify="left" if i == 0 else "right",
                          no_wrap=i > 0)
        for r in t.rows:
            style = "dim" if r[0].startswith("Δ") else None
            rt.add_row(*r, style=style)
        console.print(rt)


def settings_lines(doc: dict) -> list[str]:
    """Human-readable lines describing the run's settings and methods."""
    s = doc["settings"]
    out = [f"{k}: {v}" for k, v in s.items() if not isinstance(v, dict)]
    out += [f"{k}: {json.dumps(v, default=str)}" for k, v in s.items() if isinstance(v, dict)]
    for k, m in doc["methods"].items():
        out.append(f"method {k}: " + ", ".join(f"{a}={b}" for a, b in m.items()))
    return out


def markdown(doc: dict, tables: list[Table], title: str) -> str:
    """The report as Markdown: title, settings list, then every table."""
    lines = [f"# {title}", "", f"Generated by `{doc.get('command', 'facealign evaluate')}` "
             f"(facealign {doc.get('version', '?')}, {doc.get('created_utc', '')}).", "",
             "## Settings", ""]
    lines += [f"- {ln}" for ln in settings_lines(doc)]
    for t in tables:
        lines += ["", f"## {t.title}", "", "| " + " | ".join(t.header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(t.header) - 1)) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t.rows]
        if t.notes:
            lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines) + "\n"


def to_jsonable(x, nd: int = 4):
    """Numbers rounded to ``nd`` decimals, NaN/inf to ``None``, numpy to lists (recursive)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v, nd) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist(), nd)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return round(x, nd) if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | Path, doc: dict) -> None:
    """Write ``doc`` as indented JSON (see :func:`to_jsonable`)."""
    Path(path).write_text(json.dumps(to_jsonable(doc), indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------
# CED plots
# ---------------------------------------------------------------------------------------------

def check_plot_available() -> None:
    """Raise :class:`PlotUnavailableError` (with the install hint) if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'facealign-cli[plot]' (or pip install "
            "matplotlib)") from exc


def ced_legend(label: str, errors: np.ndarray) -> str:
    """``label (AUC@7 a, FR>7 b%, FR>10 c%)`` for a list of NME values in %."""
    c = ced_summary(errors)
    return (f"{label} (AUC@7 {c['auc_7']:.3f}, FR>7 {100 * c['fr_7']:.1f}%, "
            f"FR>10 {100 * c['fr_10']:.1f}%)")


def plot_ced(path: str | Path, panels: list[tuple[str, list[tuple[str, np.ndarray, dict]]]],
             title: str = "", max_error: float = 10.0) -> None:
    """Save CED curves (fraction of faces with NME <= x) as a PNG, one panel per entry.

    Args:
        path: output ``.png``.
        panels: ``(panel title, [(label, (N,) NME in % with NaN for misses, line kwargs)])``.
        title: figure title.
        max_error: x range in % NME.

    Raises:
        PlotUnavailableError: matplotlib is missing.
    """
    check_plot_available()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(panels)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(6.2 * ncol, 4.8 * nrow), constrained_layout=True)
    FigureCanvasAgg(fig)
    for i, (ptitle, curves) in enumerate(panels):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for label, err, kw in curves:
            x, y = ced_curve(err, max_error=max_error, num=401)
            ax.plot(x, y, label=ced_legend(label, err), **kw)
        ax.axvline(7.0, color="0.6", lw=0.8, ls=":")
        ax.axvline(10.0, color="0.6", lw=0.8, ls=":")
        ax.set_xlim(0, max_error)
        ax.set_ylim(0, 1.0)
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("fraction of faces")
        ax.set_title(ptitle, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.savefig(str(path), dpi=110)


_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def aflw2000_panels(doc: dict, per_image: dict, yaw_fit: np.ndarray) -> list:
    """CED panels for AFLW2000-3D: all faces, each fit-yaw bin (solid: ground-truth crops,
    dashed: detector in the loop; one colour per method) and, if run, occlusion (one line
    style per occluder)."""
    labels = _labels(doc["methods"])
    keys = list(labels)
    b = yaw_bin_index(yaw_fit)
    styles = {"gt-crops": "-", "detector": "--"}
    panels = []
    for title, mask in [("all faces", np.ones(len(b), bool))] + [
            (f"|yaw| {BIN_LABELS[k]} ({YAW_SPLITS['fit'].split(' (')[0]})", b == k)
            for k in range(3)]:
        curves = []
        for proto, ls in styles.items():
            if proto not in per_image:
                continue
            for ci, k in enumerate(keys):
                curves.append((f"{labels[k]} · {proto}", per_image[proto][k][mask],
                               {"color": _COLOURS[ci % 4], "ls": ls}))
        panels.append((f"{title}, n={int(mask.sum())}", curves))
    if "occlusion" in per_image:
        curves = []
        for ci, k in enumerate(keys):
            if "gt-crops" in per_image:
                curves.append((f"{labels[k]} · clean", per_image["gt-crops"][k],
                               {"color": _COLOURS[ci % 4], "ls": "-"}))
            for kind, ls in zip(OCCLUDER_KINDS, ["--", "-.", ":"]):
                curves.append((f"{labels[k]} · {kind}", per_image["occlusion"][kind][k],
                               {"color": _COLOURS[ci % 4], "ls": ls}))
        panels.append(("occlusion, ground-truth crops, all faces", curves))
    return panels


def landmarks68_panels(doc: dict, per_image: dict) -> list:
    """CED panels for ``landmarks68``: box-normalised and inter-ocular NME, one line per
    method (misses count as failures)."""
    labels = _labels(doc["methods"])
    return [(title, [(labels[k], per_image[k][metric], {"color": _COLOURS[i % 4]})
                     for i, k in enumerate(labels)])
            for title, metric in (("NME / sqrt(w·h) of the 68-point box", "nme_box"),
                                  ("NME / inter-ocular distance (points 36-45)", "nme_io"))]
