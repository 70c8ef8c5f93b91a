"""facealign_cli.io.records: atomic writes whose hidden temporary name fits wherever the final
name does (issue 12 item 9: names of 241-255 bytes)."""

from __future__ import annotations

import os

import pytest

from facealign_cli.io.records import atomic_open, is_temp_name, write_json


@pytest.mark.parametrize("n_bytes", [240, 241, 247, 254, 255])
@pytest.mark.parametrize("char", ["a", "é", "写"])
def test_long_names_fit_with_their_temporary_file(tmp_path, n_bytes, char):
    stem_bytes = n_bytes - len(".json")
    width = len(char.encode())
    stem = char * (stem_bytes // width) + "b" * (stem_bytes % width)
    name = stem + ".json"
    assert len(os.fsencode(name)) == n_bytes
    with atomic_open(tmp_path / name) as f:
        (tmp,) = os.listdir(tmp_path)  # the hidden temporary file, while it is written
        f.write("{}\n")
    assert len(os.fsencode(tmp)) <= 255 and is_temp_name(tmp)
    assert os.listdir(tmp_path) == [name]
    write_json(tmp_path / name, {"ok": True})
    assert (tmp_path / name).read_text().startswith("{")
