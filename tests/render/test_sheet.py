"""The static contact sheet: escaping, links, failures with their reason, pages, no script,
videos embedded with their thumbnail as the poster and their codec said."""

from __future__ import annotations

import html.parser
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.core.face import Face
from facealign_cli.render.sheet import (
    SheetEntry,
    SheetFace,
    sheet_pages,
    thumbnail,
    write_sheet,
    write_thumbnail,
)


class _Links(html.parser.HTMLParser):
    """Collects hrefs, img srcs, videos (their attributes), tags and text of a page."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.tags, self.text = [], [], set(), []
        self.videos = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a["href"])
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "video":
            self.videos.append(a)

    def handle_data(self, data):
        self.text.append(data)


def _parse(text):
    p = _Links()
    p.feed(text)
    return p


def test_face_records():
    f = SheetFace.from_record({"score": 0.91, "pose": {"yaw": 10.0, "pitch": -2.5,
                                                       "roll": 1.0}})
    assert f == SheetFace(0.91, (10.0, -2.5, 1.0))
    face = Face(box=np.zeros(4, np.float32), score=0.8,
                pose=np.array([1, 2, 3], np.float32))
    assert SheetFace.from_record(face) == SheetFace(pytest.approx(0.8), (1.0, 2.0, 3.0))
    assert SheetFace.from_record(face.to_dict()).pose == (1.0, 2.0, 3.0)
    assert SheetFace.from_record({"score": 0.5}).pose is None


def test_sheet_escapes_names_and_quotes_links(tmp_path):
    nasty = 'a <b>&"x" #1?.jpg'
    entries = [
        {"path": f"photos/{nasty}", "overlay": f"{nasty}.jpg", "thumbnail": f"thumbs/{nasty}.jpg",
         "faces": [{"score": 0.93, "pose": {"yaw": 12.34, "pitch": -5.0, "roll": 0.5}}]},
        {"path": "photos/empty.jpg", "overlay": "empty.jpg", "faces": []},
        {"path": "photos/<script>alert(1)</script>.png", "status": "failed",
         "error": "CorruptImageError", "message": "not a JPEG: <bad> & broken"},
    ]
    (page_name, text), = sheet_pages(entries, title="run <1>")
    assert page_name == "index.html"
    assert "<script" not in text.lower() and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in text
    assert "&lt;bad&gt; &amp; broken" in text and "CorruptImageError" in text
    p = _parse(text)
    assert "script" not in p.tags
    assert p.hrefs == ["#failed", "a%20%3Cb%3E%26%22x%22%20%231%3F.jpg.jpg", "empty.jpg"]
    assert p.srcs == ["thumbs/a%20%3Cb%3E%26%22x%22%20%231%3F.jpg.jpg", "empty.jpg"]
    assert p.videos == []
    body = " ".join(p.text)
    assert "photos/" + nasty in body  # shown as it is
    assert "12.3" in body and "0.93" in body and "no face found" in body
    assert "run <1>" in body
    # written: the links resolve to the files beside index.html
    for rel in ("a <b>&\"x\" #1?.jpg.jpg", "empty.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    pages = write_sheet(tmp_path, entries)
    assert pages == [tmp_path / "index.html"]
    from urllib.parse import unquote

    for href in _parse(pages[0].read_text(encoding="utf-8")).hrefs[1:]:
        assert (tmp_path / unquote(href)).is_file()


def test_pages_link_to_each_other():
    entries = [SheetEntry(name=f"p{i}.jpg", overlay=f"p{i}.jpg") for i in range(5)]
    entries.append(SheetEntry(name="bad.jpg", status="failed", error="E", message="why"))
    pages = sheet_pages(entries, per_page=2)
    assert [n for n, _ in pages] == ["index.html", "index-2.html", "index-3.html"]
    for name, text in pages:
        p = _parse(text)
        assert {h for h in p.hrefs if h.startswith("index") and "#" not in h} == \
            {n for n, _ in pages} - {name}
        assert ("#failed" if name == "index.html" else "index.html#failed") in p.hrefs
    assert "why" in pages[0][1] and "why" not in pages[1][1]
    assert len(_parse(pages[2][1]).srcs) == 1
    # an empty run still gets one page
    assert len(sheet_pages([])) == 1


def test_thumbnails(tmp_path):
    import cv2

    img = np.zeros((1000, 500, 3), np.uint8)
    assert thumbnail(img, 320).shape == (320, 160, 3)
    small = np.zeros((100, 50, 3), np.uint8)
    assert thumbnail(small, 320) is small
    path = write_thumbnail(tmp_path / "t" / "x.jpg", img)
    assert cv2.imread(str(path)).shape == (320, 160, 3)
    assert [q.name for q in Path(tmp_path / "t").iterdir()] == ["x.jpg"]


def test_faces_are_numbered_from_0_as_in_file_names_json_and_pose_csv():
    faces = [{"score": 0.9, "pose": [1.0, 2.0, 3.0]}, {"score": 0.5, "pose": None}]
    (_, text), = sheet_pages([{"path": "a.jpg", "overlay": "a.jpg", "faces": faces}])
    rows = [c.split("</td>")[0] for c in text.split("<tr><td>")[1:]]
    assert rows == ["0", "1"]  # a.jpg's face 0 is a_face0.obj, "face": 0 in pose.csv


def test_videos_are_embedded_with_their_thumbnail_and_codec(tmp_path):
    """A video's card: a ``<video>`` (no script: the browser's own controls) whose source is
    the rendered file and whose poster is its thumbnail, both quoted; a link to the file; the
    codec in the note (``render``: :func:`codec_note` of the manifest's ``video.codec``)."""
    from facealign_cli.render.sheet import codec_note

    assert codec_note("h264") == ", H.264" and codec_note(None) == ""
    assert "browsers do not play it" in codec_note("mp4v")
    entries = [{"path": "in/a #1.mp4", "overlay": "a #1.mp4", "thumbnail": ".thumbs/a #1.jpg",
                "video": True, "note": "video: 8 frames" + codec_note("h264"),
                "faces": [{"score": 0.9}]},
               {"path": "in/b.jpg", "overlay": "b.jpg"},
               {"path": "in/c.mp4", "overlay": "c.mp4", "video": True}]
    (_, text), = sheet_pages(entries)
    p = _parse(text)
    assert "script" not in p.tags
    assert [(v["src"], v.get("poster")) for v in p.videos] == [
        ("a%20%231.mp4", ".thumbs/a%20%231.jpg"), ("c.mp4", None)]
    assert all({"controls", "muted", "loop", "playsinline"} <= set(v) for v in p.videos)
    assert p.srcs == ["b.jpg"]  # the photo is an <img>, the videos are not
    assert p.hrefs == ["a%20%231.mp4", "b.jpg", "c.mp4"]
    assert "video: 8 frames, H.264" in " ".join(p.text)
