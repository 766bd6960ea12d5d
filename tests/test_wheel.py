"""The installed package trains: a wheel of this tree in a fresh environment, run from a
directory outside the clone, through the ``huracan`` console script.

The fresh environment is a venv without the editable install; the dependencies (torch,
Lightning, ...) come from this environment's site-packages through a ``.pth`` line, so
the test checks the wheel's own contents (code, ``conf/``, entry point) in seconds rather
than reinstalling gigabytes.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import ROOT


def test_the_wheel_ships_the_config_and_trains_from_anywhere(tmp_path):
    # built from a copy: an in-place build would leave build/ and *.egg-info in the clone
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "huracan", source / "huracan", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("huracan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "huracan/conf/config.yaml" in names
    assert "huracan/conf/pipeline/per_coin.yaml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "huracan = huracan.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    here = sysconfig.get_path("purelib")  # the dependencies, not this tree's editable install
    assert here in site.getsitepackages()
    (Path(purelib) / "dependencies.pth").write_text(here + "\n")
    # --target, not --prefix: pip would uninstall this environment's own huracan first
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", purelib]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import huracan; print(huracan.__file__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(purelib), where  # the wheel's copy, not the clone
    run = subprocess.run(
        [python, Path(purelib) / "bin" / "huracan", "train", "debug=fast", "hydra.run.dir=run"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((elsewhere / "run" / "summary.json").read_text())
    assert summary["data"]["n_assets"] == 6 and (elsewhere / "run" / "results.csv").exists()
