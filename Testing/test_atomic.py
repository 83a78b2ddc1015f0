import os
import stat

import pytest

from DMIFLib.atomic import atomic_path, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.pt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".tmp.pt") and tmp.parent == tmp_path
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_output_gets_the_usual_permissions_not_mkstemps_0600(tmp_path):
    target = tmp_path / "predictions.tsv"
    atomic_write_text(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
