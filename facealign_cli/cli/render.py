"""``facealign render``: pictures of the results, one overlay per photo, and a contact sheet.

Imported only when the command runs (or its ``--help`` is shown): like :mod:`.main`, nothing
heavy at module level.
"""

from __future__ import annotations

import click

from facealign_cli.cli.main import (
    EXIT_CODES_HELP,
    _common_options,
    _own_options,
    _pose_options,
    _run,
    _video_options,
    _with_input_help,
)


@click.command("render", epilog=EXIT_CODES_HELP)
@_common_options
@_own_options("render")
@_pose_options
@_video_options
@_with_input_help
def render(**params):
    """Draw the results over each photo: one JPEG per photo, one MP4 per video.

    Writes <out>/<relative path without extension>.jpg: the photo with the chosen --draw
    layers of every face found (default: box, landmarks, pose). A video (.mp4 .avi .mov .mkv
    .webm) gets <out>/<relative path without extension>.mp4: every processed frame
    (--frame-step, --max-fps; at their rate) with the layers and each face's track id (#k) at
    its box; H.264, which browsers play, where PyAV is installed (pip install av), else
    MPEG-4 Part 2 ('mp4v') with a warning. With --sheet also a contact sheet of the run,
    <out>/index.html (videos embedded). --out must be a folder.
    """
    _run("render", params)
