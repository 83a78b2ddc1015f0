"""QA PNGs: written atomically as real PNGs, without touching matplotlib's global backend (Slicer's process)."""

import subprocess
import sys

# Run in a fresh process: whether a backend is already chosen depends on what pytest imported before.
SCRIPT = """
import sys
import matplotlib
import numpy as np
import SimpleITK as sitk
from DMIFLib.preprocessing.qa import box_overlay_png, checkerboard_png
from DMIFLib.preprocessing.roi import OrientedBox

out = sys.argv[1]
matplotlib.use("svg")  # stands in for the application's own backend
image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(12, 40, 40)).astype(np.float32))
box = OrientedBox(center_ras=[-20.0, -20.0, 6.0], axes_ras=np.eye(3), size_mm=[10.0, 10.0, 4.0])
paths = [box_overlay_png({"t1c": image, "t2w": image}, box, out + "/box.png", title="P1"),
         checkerboard_png(image, image, out + "/checker.png", moving_before=image)]
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), len(plt.get_fignums()), *paths)
"""


def test_qa_pngs_leave_the_matplotlib_backend_alone(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    backend, open_figures, *paths = done.stdout.split()
    assert backend == "svg" and open_figures == "0"
    assert paths == [str(tmp_path / "box.png"), str(tmp_path / "checker.png")]
    for name in ("box.png", "checker.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.png", "checker.png"]  # no temporary file left
