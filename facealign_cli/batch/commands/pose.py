"""``pose``: rows of the run's single table ``<out>/pose.csv`` (:data:`.base.POSE_COLUMNS`),
one per face; a video's rows have the ``frame``, ``time`` and ``track`` columns filled
(``face`` = the face's rank in its frame)."""

from __future__ import annotations

from typing import Any

from facealign_cli.batch.commands.base import Command, ItemWriter, pose_rows
from facealign_cli.batch.layout import POSE_CSV_NAME
from facealign_cli.batch.record_types import PoseRow


class Pose(Command):
    """Rows of the run's single table ``<out>/pose.csv`` (:data:`POSE_COLUMNS`, angles in
    degrees, box in pixels), one row per face, faces by descending score."""

    name = "pose"
    table = True
    writes_pose = True

    def open_writer(self, *, item, source, aligner, opts):
        return PoseWriter(self, item, source.sink, aligner, opts)

    def outputs_present(self, out, outputs) -> bool:
        return True  # the rows live in the done record; pose.csv is rebuilt from them


class PoseWriter(ItemWriter):
    """The rows of one item; with ``--out -`` (a photo) also its NDJSON record."""

    def __init__(self, *args):
        super().__init__(*args)
        self.rows: list[PoseRow] = []
        self.record: dict[str, Any] | None = None

    def add(self, frame, faces):
        from facealign_cli.core.tracking import track_of

        frame.full_size(faces)
        conv = self.opts.aligner.pose_convention
        rows = [r._replace(frame=frame.index, time=frame.seconds, track=track_of(f))
                for r, f in zip(pose_rows(self.item.path, faces, conv), faces)]
        self.rows += rows
        if self.opts.streaming:
            self.record = {"path": self.item.path, "width": frame.width,
                           "height": frame.height, "pose_convention": conv,
                           "faces": [r.columns() for r in rows]}

    def close(self):
        rows = tuple(self.rows)
        if self.opts.streaming:
            return self.encoded(rows=rows, record=self.record)
        return self.encoded(rows=rows, outputs=(POSE_CSV_NAME,) if rows else ())
