"""The image commands, one module each (:mod:`.detect`, :mod:`.landmarks`, :mod:`.pose`,
:mod:`.mesh`, :mod:`.render`; what they share in :mod:`.base`): what a command runs on an
item and how its :class:`~.base.ItemWriter` turns each frame's faces into output files,
``pose.csv`` rows and NDJSON records.

A new command is one module with a :class:`~.base.Command` subclass (its name, class
attributes, :meth:`~.base.Command.open_writer` and writer), added to :data:`_ALL` below.
"""

from __future__ import annotations

from facealign_cli.batch.commands.base import (
    POSE_COLUMNS,
    POSE_VIDEO_COLUMNS,
    Command,
    Encoded,
    ItemWriter,
    align,
    face_summary,
    jpeg_bytes,
    json_file_bytes,
    keep_faces,
    pose_rows,
    quality_filter_on,
    quality_filter_warning,
    quaternion,
)
from facealign_cli.batch.commands.detect import Detect
from facealign_cli.batch.commands.landmarks import Landmarks
from facealign_cli.batch.commands.mesh import Mesh
from facealign_cli.batch.commands.pose import Pose
from facealign_cli.batch.commands.render import OVERLAY_QUALITY, Render

_ALL: dict[str, Command] = {c.name: c() for c in (Detect, Landmarks, Pose, Mesh, Render)}
COMMANDS = tuple(_ALL)
STREAMABLE = tuple(n for n, c in _ALL.items() if c.streamable)


def get_command(name: str) -> Command:
    """The command object for ``name``.

    Raises:
        ValueError: unknown command.
    """
    try:
        return _ALL[name]
    except KeyError:
        raise ValueError(f"unknown command {name!r}") from None


__all__ = ["COMMANDS", "OVERLAY_QUALITY", "POSE_COLUMNS", "POSE_VIDEO_COLUMNS", "STREAMABLE",
           "Command", "Detect", "Encoded", "ItemWriter", "Landmarks", "Mesh", "Pose", "Render",
           "align", "face_summary", "get_command", "jpeg_bytes", "json_file_bytes",
           "keep_faces", "pose_rows", "quality_filter_on",
           "quality_filter_warning", "quaternion"]
