"""A static contact sheet of a render run: ``index.html`` (and ``index-2.html``, … for long runs)
with a thumbnail per photo linking to its full overlay, each rendered video embedded (an HTML
``<video>`` element with its thumbnail as the poster, and a link to the file), the pose and
score of every face, and the images that failed with their reason.

Plain HTML and an inline style sheet: no server, no JavaScript, no file outside the output
folder (paths in the page are relative to it). Browsers play the videos ``render`` writes in
H.264 (:mod:`facealign_cli.io.video_writer`); the card of an ``mp4v`` video (the fallback) says
that browsers do not play it (:func:`codec_note`). Every name and message is HTML-escaped and every
link URL-quoted, so odd file names (``<``, ``&``, ``#``, ``?``, spaces, non-ASCII) are shown as
they are and still link to the right file.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np

from facealign_cli.defaults import POSE_FORMULAS
from facealign_cli.io.records import atomic_open

#: Longest side of a thumbnail in pixels, and its JPEG quality.
THUMB_SIDE = 320
THUMB_QUALITY = 85
#: Photos per page of the sheet.
PER_PAGE = 500


@dataclass
class SheetFace:
    """One face as the sheet shows it.

    Attributes:
        score: detector confidence in [0, 1].
        pose: ``(yaw, pitch, roll)`` degrees, or None when not regressed.
        quality: face quality in [0, 1] (:func:`facealign_cli.core.quality.face_quality`),
            or None when not known.
    """

    score: float
    pose: tuple[float, float, float] | None = None
    quality: float | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> SheetFace:
        """From a :meth:`facealign_cli.core.face.Face.to_dict` dict (``score``, ``quality``,
        ``pose`` as ``{"yaw", "pitch", "roll"}`` or a 3-sequence) or a
        :class:`~facealign_cli.core.face.Face`."""
        if not isinstance(rec, Mapping):  # a Face
            pose = getattr(rec, "pose", None)
            q = getattr(rec, "quality", None)
            return cls(float(rec.score), None if pose is None else tuple(float(a) for a in pose),
                       None if q is None else float(q))
        pose = rec.get("pose")
        if isinstance(pose, Mapping):
            pose = (pose.get("yaw"), pose.get("pitch"), pose.get("roll"))
        if pose is not None:
            pose = tuple(float(a) if a is not None else math.nan for a in pose)
        q = rec.get("quality")
        return cls(float(rec.get("score", math.nan)), pose, None if q is None else float(q))


@dataclass
class SheetEntry:
    """One photo of the run.

    Attributes:
        name: the input's name as shown (e.g. its path as given).
        overlay: path of the full overlay image relative to the sheet's folder (``/``- or
            ``os.sep``-separated), or None (a failed image).
        thumbnail: path of its thumbnail relative to the sheet's folder; None: the overlay
            itself is shown, scaled down by the browser.
        faces: the photo's faces.
        status: ``"ok"``, ``"failed"`` or ``"skipped"`` (the manifest's; a skipped image with
            an overlay, done by an earlier run, is shown like an ok one).
        error: the error class of a failed image (the manifest's ``error``), or None.
        message: why it failed (the manifest's ``message``), or None.
        note: a line shown under the name (a video's frame and track counts), or None.
        video: the overlay is a video: shown in a ``<video>`` element (controls, muted, looped,
            ``poster`` the thumbnail), not an ``<img>``.
    """

    name: str
    overlay: str | None = None
    thumbnail: str | None = None
    faces: list[SheetFace] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    message: str | None = None
    note: str | None = None
    video: bool = False

    @property
    def shown(self) -> bool:
        """Whether the photo gets a thumbnail (it has an overlay and did not fail)."""
        return self.overlay is not None and self.status != "failed"

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> SheetEntry:
        """From a per-photo dict: ``path`` (or ``name``), ``status``, ``error``, ``message``
        (the keys of a manifest line), ``overlay``, ``thumbnail``, ``note``, ``video`` (true
        for a video) and ``faces`` (a list of :meth:`~facealign_cli.core.face.Face.to_dict`
        dicts or faces). Missing keys take the defaults of :class:`SheetEntry`."""
        return cls(name=str(rec.get("name", rec.get("path", ""))),
                   overlay=rec.get("overlay"), thumbnail=rec.get("thumbnail"),
                   faces=[f if isinstance(f, SheetFace) else SheetFace.from_record(f)
                          for f in rec.get("faces") or []],
                   status=str(rec.get("status", "ok")), error=rec.get("error"),
                   message=rec.get("message"), note=rec.get("note"),
                   video=bool(rec.get("video")))


def thumbnail(image_bgr: np.ndarray, max_side: int = THUMB_SIDE) -> np.ndarray:
    """The image scaled down (area averaging) so that its longest side is at most
    ``max_side``; a smaller image is returned as it is. (H, W, 3) uint8 BGR in and out."""
    img = np.asarray(image_bgr)
    h, w = img.shape[:2]
    k = max_side / max(h, w, 1)
    if k >= 1:
        return img
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def write_thumbnail(path: str | os.PathLike, image_bgr: np.ndarray, *,
                    max_side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> Path:
    """Write :func:`thumbnail` of an image as a JPEG, atomically (folders created).

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be written.
        ValueError: the image cannot be encoded.
    """
    ok, buf = cv2.imencode(".jpg", thumbnail(image_bgr, max_side),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("could not encode the thumbnail as JPEG")
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.tobytes())
    return path


def _url(rel: str) -> str:
    """A relative file path as an escaped, percent-quoted URL for an attribute: the bytes of
    each name as the file system has them (:func:`os.fsencode`, so a name that is not valid
    UTF-8 links to its file too)."""
    parts = str(rel).replace(os.sep, "/").split("/")
    return html.escape("/".join(quote(os.fsencode(p), safe="") for p in parts), quote=True)


def codec_note(codec: str | None) -> str:
    """What a card's note says of a rendered video's codec (the manifest's ``video.codec``):
    ``", H.264"``, ``", MPEG-4 Part 2 (mp4v): browsers do not play it"``, or ``""`` when
    unknown (a video rendered before the codec was recorded)."""
    if not codec:
        return ""
    if codec == "h264":
        return ", H.264"
    if codec == "mp4v":
        return ", MPEG-4 Part 2 (mp4v): browsers do not play it"
    return f", {codec}"


def _num(x: float | None, nd: int) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em;background:#f4f4f4;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
.summary{margin:0 0 1em;color:#555}
nav{margin:.6em 0}nav a,nav span{margin-right:.6em}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:330px}
.card img,.card video{display:block;max-width:320px;max-height:320px;margin:0 auto}
.name{font-size:.85em;word-break:break-all;margin:.4em 0}
table{border-collapse:collapse;font-size:.8em}
td,th{padding:1px 6px;text-align:right;border-bottom:1px solid #eee}
th{color:#666;font-weight:normal}
.none{font-size:.8em;color:#888}
.failed{background:#fff;border:1px solid #e3b4b4;border-radius:6px;padding:8px;margin-top:1.2em}
.failed td,.failed th{text-align:left;vertical-align:top}
.failed h2{font-size:1.1em;margin:0 0 .4em}
"""


def _card(e: SheetEntry) -> str:
    name = html.escape(e.name)
    thumb = e.thumbnail or e.overlay
    rows = []
    for i, f in enumerate(e.faces):  # numbered from 0, as in file names, JSON and pose.csv
        yaw, pitch, roll = f.pose if f.pose is not None else (None, None, None)
        rows.append(f"<tr><td>{i}</td><td>{_num(f.score, 2)}</td><td>{_num(f.quality, 2)}</td>"
                    f"<td>{_num(yaw, 1)}</td><td>{_num(pitch, 1)}</td><td>{_num(roll, 1)}</td>"
                    "</tr>")
    faces = ("<table><tr><th>face</th><th>score</th><th>quality</th><th>yaw°</th><th>pitch°</th>"
             "<th>roll°</th></tr>" + "".join(rows) + "</table>") if rows else \
        '<div class="none">no face found</div>'
    note = f'<div class="none">{html.escape(e.note)}</div>' if e.note else ""
    if e.video:
        poster = f' poster="{_url(e.thumbnail)}"' if e.thumbnail else ""
        media = (f'<video src="{_url(e.overlay)}"{poster} controls muted loop playsinline '
                 f'preload="metadata" title="{name}"></video>'
                 f'<div class="none"><a href="{_url(e.overlay)}">open the video</a></div>')
    else:
        media = (f'<a href="{_url(e.overlay)}"><img src="{_url(thumb)}" alt="{name}" '
                 'loading="lazy"></a>')
    return f'<div class="card">{media}<div class="name">{name}</div>{note}{faces}</div>'


def _pose_note(convention: str | None) -> str:
    """The line of a page that says what the angles mean (empty without a convention)."""
    if convention is None:
        return ""
    formula = POSE_FORMULAS.get(convention)
    return ('<p class="summary">yaw, pitch, roll in degrees, convention '
            f"{html.escape(convention)}" + (f" ({html.escape(formula)})" if formula else "")
            + ": yaw &gt; 0 the subject turns to their right, pitch &gt; 0 looks up, roll "
              "&gt; 0 tilts clockwise in the picture.</p>")


def _page_name(i: int, stem: str) -> str:
    return f"{stem}.html" if i == 0 else f"{stem}-{i + 1}.html"


def sheet_pages(entries: Iterable[SheetEntry | Mapping[str, Any]], *,
                title: str = "facealign render", per_page: int = PER_PAGE,
                stem: str = "index", pose_convention: str | None = None
                ) -> list[tuple[str, str]]:
    """The HTML of the sheet, as ``(file name, text)`` pages: ``index.html``, ``index-2.html``
    … with ``per_page`` photos each (at least one page). The first page also lists every
    failed image (name, error, reason) and images not processed, below the photos (its
    summary line links there); every page links to the others.

    Args:
        entries: :class:`SheetEntry` objects or dicts for :meth:`SheetEntry.from_record`, in
            display order.
        title: the page title (escaped).
        per_page: photos per page (>= 1).
        stem: file name stem of the pages.
        pose_convention: the convention of the faces' angles
            (:data:`facealign_cli.defaults.POSE_CONVENTIONS`), stated under the summary of
            every page; ``None``: not stated.
    """
    es = [e if isinstance(e, SheetEntry) else SheetEntry.from_record(e) for e in entries]
    shown = [e for e in es if e.shown]
    failed = [e for e in es if not e.shown]
    per_page = max(1, int(per_page))
    n_pages = max(1, -(-len(shown) // per_page))
    n_faces = sum(len(e.faces) for e in shown)
    t = html.escape(title)
    pages = []
    for p in range(n_pages):
        where = "#failed" if p == 0 else _url(_page_name(0, stem)) + "#failed"
        n_failed = (f'<a href="{where}">{len(failed)} image(s) failed or not processed</a>'
                    if failed else "no image failed")
        summary = (f'<p class="summary">{len(shown)} photo(s) shown, {n_faces} face(s); '
                   f'{n_failed}.</p>{_pose_note(pose_convention)}')
        nav = ""
        if n_pages > 1:
            links = [f"<span>page {i + 1}</span>" if i == p else
                     f'<a href="{_url(_page_name(i, stem))}">page {i + 1}</a>'
                     for i in range(n_pages)]
            nav = "<nav>" + "".join(links) + "</nav>"
        cards = "".join(_card(e) for e in shown[p * per_page:(p + 1) * per_page])
        fail = ""
        if p == 0 and failed:
            rows = "".join(
                f"<tr><td>{html.escape(e.name)}</td><td>{html.escape(e.status)}</td>"
                f"<td>{html.escape(e.error or '')}</td><td>{html.escape(e.message or '')}</td>"
                "</tr>" for e in failed)
            fail = ('<div class="failed" id="failed"><h2>Failed or not processed</h2><table><tr>'
                    "<th>image</th><th>status</th><th>error</th><th>reason</th></tr>"
                    f"{rows}</table></div>")
        body = f"<h1>{t}</h1>{summary}{nav}<div class=\"grid\">{cards}</div>{nav}{fail}"
        pages.append((_page_name(p, stem),
                      '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                      '<meta name="viewport" content="width=device-width, initial-scale=1">'
                      f"<title>{t}</title><style>{_STYLE}</style></head>"
                      f"<body>{body}</body></html>\n"))
    return pages


def write_sheet(out_dir: str | os.PathLike, entries: Sequence[SheetEntry | Mapping[str, Any]],
                *, title: str = "facealign render", per_page: int = PER_PAGE,
                stem: str = "index", pose_convention: str | None = None) -> list[Path]:
    """Write the pages of :func:`sheet_pages` (same arguments) into ``out_dir``, each
    atomically; the paths in the entries must be relative to ``out_dir``.

    Returns:
        The pages written, ``out_dir/index.html`` first.

    Raises:
        OSError: a page cannot be written.
    """
    out = Path(out_dir)
    written = []
    for name, text in sheet_pages(entries, title=title, per_page=per_page, stem=stem,
                                  pose_convention=pose_convention):
        with atomic_open(out / name, "w", newline="\n") as fh:
            fh.write(text)
        written.append(out / name)
    return written
