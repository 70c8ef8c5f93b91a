"""Check in a real browser that the videos of ``facealign render --sheet`` play: headless
Chromium opens the contact sheet, plays every ``<video>`` and reports, per video, whether its
time advanced, its ``readyState`` and ``videoWidth`` x ``videoHeight``; then it takes a
screenshot of the page (look at it).

Steps: a clip is built from a photo (default: ``examples/astronaut_trio.jpg``; ``--photo``),
24 frames at 12 fps, the photo shifted 2 px a frame (``cv2.VideoWriter``, MJPG in AVI), then
``python -m facealign_cli.cli.main render CLIP PHOTO --out OUT --sheet`` runs on it (this tree), and
``OUT/index.html`` is opened in Chromium (``--chromium``, else ``chromium``,
``chromium-browser`` or ``google-chrome`` on the PATH; Debian: ``apt-get install chromium``),
driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: no port, no
package beyond the standard library): headless, no sandbox, no GPU, no network services, a
fresh profile.

Exit status: 0 every video plays (or no Chromium: prints ``SKIPPED`` and why), 1 a video does
not play (the report says which and the browser's media error), 2 a setup problem (the render
failed, the browser could not be driven).

Usage: ``PYTHONPATH=$PWD python3 scripts/check_sheet_browser.py [--out DIR] [--photo JPG]
[--screenshot PNG] [--chromium PATH]`` (the screenshot defaults to ``OUT/sheet.png``).
:func:`check_page` is also what ``tests/render/test_sheet_in_browser.py`` runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO / "examples" / "astronaut_trio.jpg"
#: The flags of a quiet, throw-away headless browser (the profile folder is added).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--mute-audio",
                  "--autoplay-policy=no-user-gesture-required", "--remote-debugging-pipe")
#: Seconds of playback a video must reach to count as playing, and how long to wait for it.
PLAYED_S, WAIT_S = 0.5, 8.0

# Plays every <video> of the page one after the other; resolves to a JSON list, one object
# per video: what the browser says of it after PLAYED_S seconds of playback (or WAIT_S).
_PLAY_ALL = """
(async () => {
  const out = [];
  for (const v of document.querySelectorAll('video')) {
    v.scrollIntoView();
    let err = null;
    try { await v.play(); } catch (e) { err = String(e); }
    const t0 = performance.now();
    while (performance.now() - t0 < WAIT_MS && !v.error && !(v.currentTime >= PLAYED_S))
      await new Promise(r => setTimeout(r, 50));
    out.push({src: v.getAttribute('src'), readyState: v.readyState,
              videoWidth: v.videoWidth, videoHeight: v.videoHeight,
              currentTime: v.currentTime, duration: v.duration, paused: v.paused,
              error: v.error ? `MediaError ${v.error.code}: ${v.error.message}` : err});
    v.pause();  // at the frame reached, for the screenshot
  }
  window.scrollTo(0, 0);
  const vids = [...document.querySelectorAll('video')];
  vids.forEach(v => v.removeAttribute('controls'));  // their overlay would darken the picture
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  vids.forEach((v, i) => { const b = v.getBoundingClientRect();
    out[i].box = [b.left, b.top, b.width, b.height]; });
  return JSON.stringify(out);
})()
""".replace("WAIT_MS", str(int(WAIT_S * 1000))).replace("PLAYED_S", str(PLAYED_S))


def find_chromium(given: str | None = None) -> str | None:
    """The Chromium executable: ``given``, else the first of ``chromium``,
    ``chromium-browser``, ``google-chrome`` on the PATH; None when there is none."""
    if given:
        return given if Path(given).is_file() or shutil.which(given) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Browser:
    """Headless Chromium driven through the DevTools protocol over ``--remote-debugging-pipe``:
    JSON messages ending with a NUL byte, written to the browser's fd 3 and read from its
    fd 4."""

    def __init__(self, exe: str, profile: Path, size: tuple[int, int]):
        to_b_r, self._to_b = os.pipe()
        self._from_b, from_b_w = os.pipe()

        def fds():  # in the child: the pipe ends as fds 3 and 4
            a, b = os.dup(to_b_r), os.dup(from_b_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}", "about:blank"]
        self._log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        os.close(to_b_r)
        os.close(from_b_w)
        self._q: queue.Queue = queue.Queue()
        self._events: list[dict] = []
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_b, 1 << 16)
            if not chunk:  # the browser is gone
                os.close(self._from_b)
                self._q.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._q.put(json.loads(msg))

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send one command and return its ``result`` (events that come meanwhile are kept).

        Raises:
            RuntimeError: the browser answered with an error, closed the pipe or did not
                answer within ``timeout`` seconds.
        """
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_b, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            m = self._next(method, end)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._events.append(m)

    def _next(self, what: str, end: float) -> dict:
        """The next message from the browser, waiting until ``end`` (``time.monotonic()``).

        Raises:
            RuntimeError: none came in time (``what`` names what was waited for), or the
                browser closed the pipe.
        """
        try:
            m = self._q.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(f"{what}: no answer from the browser in time") from None
        if m is None:
            raise RuntimeError(f"{what}: the browser closed the pipe")
        return m

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        """The first event named ``method`` (kept or to come).

        Raises:
            RuntimeError: none within ``timeout`` seconds, or the pipe closed.
        """
        end = time.monotonic() + timeout
        while True:
            for e in self._events:
                if e.get("method") == method:
                    self._events.remove(e)
                    return e
            self._events.append(self._next(method, end))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_b)
        self._log.close()


def check_page(page: Path, screenshot: Path | None, chromium: str,
               size: tuple[int, int] = (1100, 800)) -> list[dict]:
    """Open ``page`` (a local HTML file) in headless Chromium, play each of its ``<video>``
    elements and screenshot the page (PNG, ``size`` CSS pixels, after the playback).

    Returns:
        One dict per video, in page order: ``src``, ``readyState`` (0-4; 4 =
        HAVE_ENOUGH_DATA), ``videoWidth``, ``videoHeight`` (pixels; 0 = no picture decoded),
        ``currentTime``, ``duration`` (seconds), ``paused`` (when the playback check
        ended), ``error`` (the media error or the rejected ``play()``, else None), ``box``
        (``[left, top, width, height]`` of the element in the screenshot's pixels) and
        ``plays`` (no error, a picture, and at least :data:`PLAYED_S` seconds played). The
        screenshot shows each video paused at the frame it reached, without its controls
        (their overlay darkens the picture).

    Raises:
        RuntimeError: the browser could not be started or driven.
    """
    with tempfile.TemporaryDirectory(prefix="facealign-chromium-",
                                     ignore_cleanup_errors=True) as tmp:
        b = _Browser(chromium, Path(tmp) / "profile", size)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = b.call("Target.attachToTarget",
                             {"targetId": target, "flatten": True})["sessionId"]
            b.call("Emulation.setDeviceMetricsOverride",
                   {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                    "mobile": False}, session)
            b.call("Page.enable", {}, session)
            b.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
            b.wait_event("Page.loadEventFired")
            res = b.call("Runtime.evaluate", {"expression": _PLAY_ALL, "awaitPromise": True,
                                              "returnByValue": True},
                         session, timeout=30 + WAIT_S * 50)
            if "exceptionDetails" in res:
                raise RuntimeError(f"the page's script failed: {res['exceptionDetails']}")
            videos = json.loads(res["result"]["value"])
            if screenshot is not None:
                shot = b.call("Page.captureScreenshot", {"format": "png"}, session)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            b.close()
    for v in videos:
        v["plays"] = (v["error"] is None and v["videoWidth"] > 0
                      and v["currentTime"] >= PLAYED_S)
    return videos


def make_clip(photo: Path, path: Path, n: int = 24, fps: float = 12.0,
              max_side: int = 480) -> Path:
    """A clip of ``n`` frames: ``photo`` scaled to at most ``max_side`` pixels, shifted
    2 px right and 1 px down a frame (MJPG in AVI, ``fps`` frames per second).

    Raises:
        OSError: the photo cannot be read or the clip written.
    """
    import cv2
    import numpy as np

    img = cv2.imread(str(photo))
    if img is None:
        raise OSError(f"cannot read {photo}")
    k = min(1.0, max_side / max(img.shape[:2]))
    img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise OSError(f"cannot write {path}")
    for i in range(n):
        m = np.float32([[1, 0, 2.0 * i], [0, 1, 1.0 * i]])
        vw.write(cv2.warpAffine(img[:h, :w], m, (w, h), borderMode=cv2.BORDER_REFLECT))
    vw.release()
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="render's output folder (default: a new "
                                             "temporary folder, kept)")
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--screenshot", type=Path, help="default: OUT/sheet.png")
    ap.add_argument("--chromium", help="the browser executable")
    a = ap.parse_args(argv)
    exe = find_chromium(a.chromium)
    if exe is None:
        print("SKIPPED: no Chromium found (apt-get install chromium, or --chromium PATH)")
        return 0
    out = a.out or Path(tempfile.mkdtemp(prefix="facealign-sheet-"))
    src = out.parent / (out.name + "-input")
    src.mkdir(parents=True, exist_ok=True)
    make_clip(a.photo, src / "clip.avi")
    shutil.copy(a.photo, src / a.photo.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-m", "facealign_cli.cli.main", "render", str(src), "--out",
                        str(out), "--sheet", "--overwrite"], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0 or not (out / "index.html").is_file():
        print(f"render failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
        return 2
    manifest = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    codecs = {Path(m["path"]).name: (m.get("video") or {}).get("codec") for m in manifest}
    shot = a.screenshot or out / "sheet.png"
    try:
        videos = check_page(out / "index.html", shot, exe)
    except RuntimeError as exc:
        print(f"could not drive {exe}: {exc}")
        return 2
    print(f"{exe}: {out / 'index.html'}; codecs in the manifest: {codecs}")
    for v in videos:
        print(("PLAYS   " if v["plays"] else "FAILS   ") + json.dumps(v))
    print(f"screenshot: {shot}")
    if not videos:
        print("no <video> in the sheet")
        return 1
    return 0 if all(v["plays"] for v in videos) else 1


if __name__ == "__main__":
    sys.exit(main())
