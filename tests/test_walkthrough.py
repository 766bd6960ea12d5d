"""The docs walk-through's quick form: every README and docs command that is not long
(real data, 400 coins, sweeps), as written, in a fresh clone of the committed HEAD.

``bench/walkthrough.sh`` without ``WALK_QUICK`` runs the long ones too (hours on 2 cores);
this test keeps to the quick form: several minutes, so it is ``slow`` and ``docs``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.docs]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="the walk clones this repository")
@pytest.mark.skipif(shutil.which("git") is None, reason="the walk needs git")
def test_every_quick_docs_command_passes_in_a_fresh_clone():
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "walkthrough.sh")],
        env={**os.environ, "WALK_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 0, "\n".join(lines[-60:]) + out.stderr[-2000:]
    assert not [line for line in lines if line.startswith("FAIL")]
    ran = [line for line in lines if line.startswith("PASS") and "as above" not in line]
    assert len(ran) >= 15, "\n".join(lines)  # the walk ran commands, not only skips
    assert any("--synthetic" in line for line in ran)  # the live demo, to a live signal
