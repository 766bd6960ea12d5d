"""``data.end=now``: the synthetic market up to the present, and the live demo on it.

The demo's commands are read from docs/live.md and run as written (``huracan`` as
``python -m huracan``), so the page and the test cannot part.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from huracan.data import SyntheticMarket
from huracan.data.now import now_span

HOUR = pd.Timedelta("1h").value


def test_the_span_ends_at_the_next_month_and_the_last_closed_bar():
    start, end = now_span(1.0, HOUR, pd.Timestamp("2026-12-06 17:42:10", tz="UTC"))
    assert pd.Timestamp(start, tz="UTC") == pd.Timestamp("2027-01-01", tz="UTC") - pd.Timedelta(
        "8760h"
    )
    assert end == pd.Timestamp("2026-12-06 17:00", tz="UTC")  # the 17:00 bar is in progress
    _, four_hours = now_span(1.0, 4 * HOUR, pd.Timestamp("2026-12-06 17:42", tz="UTC"))
    assert four_hours == pd.Timestamp("2026-12-06 16:00", tz="UTC")


def test_the_span_stays_put_within_a_month_and_moves_on_the_first():
    first, _ = now_span(1.0, HOUR, pd.Timestamp("2026-12-01 00:10", tz="UTC"))
    last, _ = now_span(1.0, HOUR, pd.Timestamp("2026-12-31 23:59", tz="UTC"))
    january, _ = now_span(1.0, HOUR, pd.Timestamp("2027-01-01 00:10", tz="UTC"))
    assert first == last != january


def test_a_market_up_to_now_is_the_months_market_cut_before_the_bar_in_progress():
    now = SyntheticMarket(n_assets=4, n_clusters=2, years=0.1, end="now")
    panel = now.load()
    clock = pd.Timestamp.now(tz="UTC")
    assert clock - pd.Timedelta("2h") < panel.timestamps[-1] <= clock - pd.Timedelta("1h")
    whole = SyntheticMarket(n_assets=4, n_clusters=2, years=0.1, start=now.start).load()
    assert whole.timestamps[-1] >= panel.timestamps[-1]  # drawn to the month's end
    rows = panel.n_bars
    assert (whole.timestamps[:rows] == panel.timestamps).all()
    for column in ("open", "high", "low", "close", "volume", "spread_bps"):
        np.testing.assert_array_equal(whole.bars[column][:rows], panel.bars[column])


def demo_commands() -> list[str]:
    """The bash block of docs/live.md's demo section, one command a line."""
    page = (ROOT / "docs" / "live.md").read_text()
    section = page.split("## A live signal on the demo market", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_documented_demo_ends_in_a_live_probability_with_a_reason(tmp_path):
    commands = demo_commands()
    assert commands[0].startswith("huracan train") and "data.end=now" in commands[0]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "huracan", command
        out = subprocess.run(
            [sys.executable, "-m", "huracan", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    document = json.loads((tmp_path / "signals.json").read_text())
    live = [s for s in document["signals"] if s["probability"] is not None]
    assert live, document["signals"]
    latest = pd.Timestamp(live[0]["bar_time"])
    now = pd.Timestamp.now(tz="UTC")
    assert now - pd.Timedelta("3h") < latest <= now - pd.Timedelta("1h")  # the last closed bar
    for signal in live:
        assert 0 <= signal["probability"] <= 1
        assert signal["trade"] or signal["reasons"], signal
