"""Kill and resume of the per-coin run: every kill point resumes to the clean run's result.

A kill is a ``Killed`` (a BaseException, as KeyboardInterrupt: no job wrapper catches it)
raised by the store at the moment the run writes a given key, so the run stops exactly
between two of its writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, run_config

from huracan.errors import ConfigError
from huracan.registry.artifacts import is_complete
from huracan.run import train
from huracan.store import LocalStore

RUN_ID = "20240101"


class Killed(BaseException):
    """The process dies here."""


def config(tmp_path, *overrides):
    return run_config(
        tmp_path,
        "pipeline=per_coin",
        "debug=fast",
        "data.n_assets=4",
        f"pipeline.run_id={RUN_ID}",
        "pipeline.test_days=20",
        "trainer.enable_progress_bar=false",
        "thresholds.min_trades=5",
        "pipeline.champion_min_trades=3",
        *overrides,
    )


def kill_at(monkeypatch, key: str) -> list[str]:
    """The store's next write of ``key`` kills the run; returns the keys written before."""
    written = []
    real = LocalStore.write_bytes

    def write_bytes(store, name, data):
        if name == key and key not in written:
            written.append(key)
            raise Killed(key)
        written.append(name)
        real(store, name, data)

    monkeypatch.setattr(LocalStore, "write_bytes", write_bytes)
    return written


def outcome(root) -> dict:
    """The champion pointers and the roster, without the times they were written."""
    store = LocalStore(root)
    out = {}
    for key in store.list("champions"):
        value = store.read_json(key)
        value.pop("updated_at", None)
        value.pop("generated_at", None)
        out[key] = value
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    summary, _ = train(config(tmp))
    result = outcome(tmp / "artifacts")
    champions = [k.split("/")[1][:-5] for k in result if k != "champions/roster.json"]
    assert champions, "the clean run needs a champion for the pointer kill points"
    return tmp, summary, result, champions[0]


KILL_POINTS = {
    "encoder saved, no job run": lambda s: "meta/shared_encoder.json",
    "first file of an export": lambda s: f"models/{s}/baseline_{RUN_ID}/weights.safetensors",
    "mid export, before the manifest": lambda s: f"models/{s}/baseline_{RUN_ID}/manifest.json",
    "after the manifest, before the pointer": lambda s: f"champions/{s}.json",
    "after the pointer, before the job's record": lambda s: f"runs/{RUN_ID}/jobs/{s}.json",
    "every job done, before the feature bank": lambda s: "meta/feature_bank.json",
    "every job done, before the roster": lambda s: "champions/roster.json",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_every_kill_point_resumes_to_the_clean_result(clean, tmp_path, monkeypatch, point):
    _, clean_summary, clean_outcome, champion = clean
    key = KILL_POINTS[point](champion)
    written = kill_at(monkeypatch, key)
    with pytest.raises(Killed):
        train(config(tmp_path))
    assert key in written
    monkeypatch.undo()
    summary, _ = train(config(tmp_path))
    assert outcome(tmp_path / "artifacts") == clean_outcome
    if point.startswith("every job done"):  # nothing left to train
        assert "shared encoder" not in summary["timings_s"]
        assert "joint heads" not in summary["timings_s"]
    store = LocalStore(tmp_path / "artifacts")
    for symbol in clean_summary["data"]["symbols"]:
        assert is_complete(store, f"models/{symbol}/baseline_{RUN_ID}")
        assert store.exists(f"runs/{RUN_ID}/jobs/{symbol}.json")


def test_a_finished_run_is_not_trained_again(clean, tmp_path):
    tmp, _, clean_outcome, _ = clean
    shutil.copytree(tmp / "artifacts", tmp_path / "artifacts")
    encoder = (tmp_path / "artifacts" / "meta" / "shared_encoder.safetensors").read_bytes()
    summary, _ = train(config(tmp_path))
    assert {"shared encoder", "joint heads"}.isdisjoint(summary["timings_s"])
    assert {j["reason"] for j in summary["per_coin"]["jobs"].values()} == {"cached"}
    assert outcome(tmp_path / "artifacts") == clean_outcome
    assert (tmp_path / "artifacts" / "meta" / "shared_encoder.safetensors").read_bytes() == encoder


def test_other_inputs_under_the_same_run_id_are_refused(clean, tmp_path):
    tmp, _, _, _ = clean
    shutil.copytree(tmp / "artifacts", tmp_path / "artifacts")
    encoder = tmp_path / "artifacts" / "meta" / "shared_encoder.safetensors"
    before = encoder.read_bytes()
    with pytest.raises(ConfigError) as err:
        train(config(tmp_path, "data.start=2023-02-01"))
    message = str(err.value)
    assert "\n" not in message and f"pipeline.run_id={RUN_ID}" in message
    assert "config:data.start" in message and "data:start" in message
    assert "use a new pipeline.run_id" in message
    assert encoder.read_bytes() == before  # refused before any training
    # where to run, and how visibly, are no inputs: those reruns resume
    summary, _ = train(config(tmp_path, "queue.max_attempts=3", "trainer.log_every_n_steps=5"))
    assert {j["reason"] for j in summary["per_coin"]["jobs"].values()} == {"cached"}


def test_inputs_may_change_before_any_model_is_made(tmp_path, monkeypatch):
    kill_at(monkeypatch, "meta/shared_encoder.json")
    with pytest.raises(Killed):
        train(config(tmp_path))
    monkeypatch.undo()
    summary, _ = train(config(tmp_path, "seed=3"))
    assert summary["per_coin"]["counts"]["completed"] == 4
    recorded = LocalStore(tmp_path / "artifacts").read_json(f"runs/{RUN_ID}/inputs.json")
    assert recorded["inputs"]["config:seed"] == 3


def test_temporary_files_of_interrupted_writes_are_removed(clean, tmp_path):
    """What a SIGKILL inside an atomic write leaves (the temporary file beside the target)."""
    tmp, _, clean_outcome, champion = clean
    root = tmp_path / "artifacts"
    shutil.copytree(tmp / "artifacts", root)
    left = [
        root / "models" / champion / f"baseline_{RUN_ID}" / ".manifest.json.k2j3h4.tmp",
        root / "champions" / f".{champion}.json.a8sd7f.tmp",
        root / "meta" / ".feature_bank.json.0001.tmp",
    ]
    for path in left:
        path.write_bytes(b'{"half": ')
    train(config(tmp_path))
    assert not any(path.exists() for path in left)
    assert not list(root.rglob("*.tmp"))
    assert outcome(root) == clean_outcome
    assert json.loads((root / "champions" / "roster.json").read_text())["run_id"] == RUN_ID


KILL_9 = """
import os, sys
sys.path.insert(0, "tests")
import huracan.io
from test_per_coin_resume import config
from huracan.run import train

target, real = sys.argv[2], os.replace

def replace(src, dst):  # SIGKILL-like: no finally, no cleanup, inside the atomic write
    if str(dst).endswith(target):
        os._exit(9)
    real(src, dst)

huracan.io.os.replace = replace
train(config(__import__("pathlib").Path(sys.argv[1])))
"""


def test_a_process_killed_mid_write_resumes_to_the_clean_result(clean, tmp_path):
    """The process dies inside the atomic write of a pointer: its temporary file and its
    lock stay behind; the next run removes the one, takes the other over, and finishes."""
    _, _, clean_outcome, champion = clean
    killed = subprocess.run(
        [sys.executable, "-c", KILL_9, str(tmp_path), f"champions/{champion}.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    root = tmp_path / "artifacts"
    assert list(root.rglob(f".{champion}.json.*.tmp"))
    assert json.loads((root / "lock.json").read_text())["pid"] != os.getpid()
    train(config(tmp_path))
    assert outcome(root) == clean_outcome
    assert not list(root.rglob("*.tmp"))
    lock = json.loads((root / "lock.json").read_text())
    assert lock["released_at"] and lock["generation"] == 2  # taken over, then released


def test_run_id_auto_resumes_the_same_inputs_and_gives_new_settings_their_own_id(tmp_path):
    """The default ``pipeline.run_id=auto``: today's date and the inputs' fingerprint, so a
    changed setting the same day is a new run, not a refusal."""
    shared = ["pipeline.run_id=auto", f"store.root={tmp_path / 'artifacts'}"]
    first, _ = train(config(tmp_path / "a", *shared))
    again, _ = train(config(tmp_path / "b", *shared))
    other, _ = train(config(tmp_path / "c", *shared, "costs.fee_bps=10"))
    ids = [s["per_coin"]["run_id"] for s in (first, again, other)]
    assert ids[0] == ids[1] != ids[2]
    assert all(i.startswith(pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-")) for i in ids)
    store = LocalStore(tmp_path / "artifacts")
    assert {k.split("/")[2] for k in store.list("models")} == {f"baseline_{i}" for i in ids}
