"""DMIFLib.allocator: glibc malloc thresholds set in DMIFLib's own processes only, with an opt-out.

Each case runs in a fresh Python process: the settings are process-wide and must not leak into pytest's.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# In a fresh process: tune (or not), then 20 rounds of allocating three 12 MB blocks (every page touched) and freeing
# them, counting the minor page faults of the last 10 rounds. With glibc's defaults the thresholds adapt to the
# block size (mmap 12 MB, trim 24 MB), so much of what is freed at the heap top is returned to the kernel every
# round and faulted in again the next (about 1000 pages a round on glibc 2.36); tuned, the heap keeps it.
PROBE = """
import json, resource, sys
from DMIFLib.allocator import allocator_tuned, tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tune" else False
import numpy as np
faults = 0
for i in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(3 * 2**20, dtype=np.float32) for _ in range(3)]
    del blocks
    if i >= 10:
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "reported": allocator_tuned(), "faults": faults}))
"""


def probe(mode: str, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "DMIF_DEFAULT_MALLOC")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environment,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_tuned_process_reuses_large_blocks_instead_of_faulting_them_in() -> None:
    tuned = probe("tune")
    assert tuned["tuned"] and tuned["reported"]
    default = probe("default")
    assert not default["reported"]
    assert default["faults"] > 1000 and tuned["faults"] * 10 < default["faults"]


@pytest.mark.skipif(not GLIBC, reason="glibc only")
@pytest.mark.parametrize("env", [{"DMIF_DEFAULT_MALLOC": "1"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_the_user_setting_wins(env: dict) -> None:
    result = probe("tune", **env)
    assert not result["tuned"] and not result["reported"]


def test_python_m_dmiflib_runs_through_the_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "DMIFLib", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "DMIFLib" in done.stdout
