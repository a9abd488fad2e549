import os

import pandas as pd
import pytest

from histoprog.io import atomic_path, read_json, write_json, write_tsv


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt"
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "done"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert read_json(tmp_path / "a.json") == {"x": 1}


def test_tsv_is_byte_identical_across_writes(tmp_path):
    table = pd.DataFrame({"a": [0.1 + 0.2, float("nan")], "b": ["x", "y"]})
    write_tsv(tmp_path / "1.tsv", table)
    write_tsv(tmp_path / "2.tsv", table)
    assert (tmp_path / "1.tsv").read_bytes() == (tmp_path / "2.tsv").read_bytes()
    assert (tmp_path / "1.tsv").read_text() == "a\tb\n0.3\tx\nNA\ty\n"
