"""The commands that write one JSON document per photo and JSON lines per video (``detect``,
``landmarks``).

* a photo: ``<key>.json`` = ``{path, width, height, <header>, pose_convention, faces}`` (or,
  with ``--out -``, the same document as the item's NDJSON record; ``pose_convention`` only
  where the faces have pose angles: ``landmarks``);
* a video: ``<key>.jsonl``, one line per processed frame, ``{"frame", "time",
  "pose_convention", "faces"}``
  (``frame``: 0-based index in the source stream, ``time``: seconds; ``faces`` as in the photo
  JSON, each with its ``track`` id); a frame whose processing raised has ``"faces": []`` and
  an ``"error"`` (counted in ``frames_failed``).
"""

from __future__ import annotations

from typing import Any

from facealign_cli.batch.commands.base import Command, ItemWriter, json_file_bytes


class JsonCommand(Command):
    """A command whose outputs are JSON documents of faces: subclasses set :meth:`faces_json`
    and :meth:`header`."""

    def faces_json(self, faces) -> list[dict[str, Any]]:
        """The ``faces`` list of a document."""
        return [f.to_dict() for f in faces]

    def header(self) -> dict[str, Any]:
        """Keys of a document that describe all its faces (once per document)."""
        return {}

    def pose_header(self, opts) -> dict[str, Any]:
        """``{"pose_convention": ...}`` in every document (and every line of a video) whose
        faces have pose angles (:meth:`~.base.Command.pose_convention`), else ``{}``."""
        convention = self.pose_convention(opts)
        return {} if convention is None else {"pose_convention": convention}

    def open_writer(self, *, item, source, aligner, opts):
        cls = JsonLinesWriter if source.many else JsonDocWriter
        return cls(self, item, source.sink, aligner, opts)


class JsonDocWriter(ItemWriter):
    """A photo's document."""

    doc: dict[str, Any] | None = None

    def add(self, frame, faces):
        frame.full_size(faces)
        self.doc = {"path": self.item.path, "width": frame.width, "height": frame.height,
                    **self.cmd.header(), **self.cmd.pose_header(self.opts),
                    "faces": self.cmd.faces_json(faces)}

    def close(self):
        if self.opts.streaming:
            return self.encoded(record=self.doc)
        self.sink.add(self.item.key + ".json", json_file_bytes(self.doc))
        return self.encoded()


class JsonLinesWriter(ItemWriter):
    """A video's lines, written to a spool as the frames come."""

    def __init__(self, *args):
        super().__init__(*args)
        _sp, self._f = self.sink.open(self.item.key + ".jsonl")

    def add(self, frame, faces, error: str | None = None):
        from facealign_cli.core.tracking import track_of

        frame.full_size(faces)
        doc: dict[str, Any] = {"frame": frame.index, "time": frame.seconds,
                               **self.cmd.pose_header(self.opts), "faces": [
            {**d, "track": track_of(f)} for f, d in zip(faces, self.cmd.faces_json(faces))]}
        if error is not None:
            doc["error"] = error
        self._f.write(json_file_bytes(doc))

    def add_failed(self, frame, error):
        self.add(frame, [], error)

    def close(self):
        self._f.close()
        return self.encoded()

    def release(self):
        self._f.close()
