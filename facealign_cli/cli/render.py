"""``facealign render``: pictures of the results, one overlay per photo, and a contact sheet.

Imported only when the command runs (or its ``--help`` is shown): like :mod:`.main`, nothing
heavy at module level.
"""

from __future__ import annotations

import click

from facealign_cli.batch.options import RENDER_DEFAULT_DRAW, RENDER_DRAW_CHOICES
from facealign_cli.cli.main import (
    EXIT_CODES_HELP,
    _common_options,
    _pose_options,
    _run,
    _video_options,
    _with_input_help,
)

DEFAULT_DRAW = ",".join(RENDER_DEFAULT_DRAW)


def _parse_draw(ctx, param, value: str) -> tuple[str, ...]:
    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    bad = [v for v in items if v not in RENDER_DRAW_CHOICES]
    if bad or not items:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'}: expected a comma-separated "
                                 f"list of {', '.join(RENDER_DRAW_CHOICES)}")
    return tuple(dict.fromkeys(items))


@click.command("render", epilog=EXIT_CODES_HELP)
@_common_options
@click.option("--draw", default=DEFAULT_DRAW, show_default=True, callback=_parse_draw,
              metavar="LAYERS",
              help="Comma-separated layers: box (detector box and score), landmarks (68, "
                   "with the iBUG contour lines), pose (3D axes at the nose tip: x red, y "
                   "green, z blue), mesh (the dense face shaded, z-buffered, blended over the "
                   "photo), depth (a depth image of the faces in place of the photo).")
@click.option("--sheet", is_flag=True,
              help="Also write <out>/.thumbs/<stem>.jpg per photo and, after the run, "
                   "<out>/index.html: a static contact sheet (a thumbnail per photo linking "
                   "to its overlay, each face's score and pose, the failed images from the "
                   "manifest with their reason); no server or JavaScript needed. A video is "
                   "embedded (a <video> element), its first annotated frame as the poster.")
@_pose_options
@_video_options
@_with_input_help
def render(draw, sheet, **params):
    """Draw the results over each photo: one JPEG per photo, one MP4 per video.

    Writes <out>/<relative path without extension>.jpg: the photo with the chosen --draw
    layers of every face found (default: box, landmarks, pose). A video (.mp4 .avi .mov .mkv
    .webm) gets <out>/<relative path without extension>.mp4: every processed frame
    (--frame-step, --max-fps; at their rate) with the layers and each face's track id (#k) at
    its box; H.264, which browsers play, where PyAV is installed (pip install av), else
    MPEG-4 Part 2 ('mp4v') with a warning. With --sheet also a contact sheet of the run,
    <out>/index.html (videos embedded). --out must be a folder.
    """
    _run("render", params, draw=draw, sheet=sheet)
