"""How a store's writes land: several at once (``write_many``), a version killed mid-write,
and the scratch store that skips fsync (a replay's dry-run copy, ``store.durable=false``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from huracan.errors import ConfigError
from huracan.pipelines.replay.state import COPY_DIR, working_store
from huracan.registry.artifacts import is_complete, read_manifest, write_version
from huracan.significance import block_draws, day_statistics
from huracan.store import InvalidArtifactKey, LocalStore, mark_scratch
from huracan.store.base import SCRATCH_KEY, boot_id

ROOT = Path(__file__).resolve().parents[1]
FILES = {f"part{i}.bin": bytes([i]) * (1000 + i) for i in range(6)}

needs_boot_id = pytest.mark.skipif(boot_id() is None, reason="no boot id on this system")


def test_write_many_writes_every_file(tmp_path):
    store = LocalStore(tmp_path)
    files = {f"models/BTC/v/{name}": data for name, data in FILES.items()}
    store.write_many(files)
    assert {key: store.read_bytes(key) for key in files} == files
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_write_many_raises_after_the_other_writes_landed(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidArtifactKey):
        store.write_many({"a.json": b"1", "../outside.json": b"2", "c.json": b"3"})
    assert store.list() == ["a.json", "c.json"]
    assert not (tmp_path.parent / "outside.json").exists()


KILLED = """
import os, sys, threading
from huracan.registry.artifacts import write_version
from huracan.store import LocalStore
files = {name: bytes([i]) * (1000 + i) for i, name in enumerate(sys.argv[3].split(","))}
store = LocalStore(sys.argv[1], durable=sys.argv[2] == "durable")
rename, landed, lock = os.replace, [], threading.Lock()
def killed_after_two(src, dst):  # the process dies as its third file is renamed into place
    with lock:
        if len(landed) == 2:
            os._exit(9)
        rename(src, dst)
        landed.append(dst)
os.replace = killed_after_two
write_version(store, "models/BTC/baseline_x", files, {"symbol": "BTC"})
"""


@pytest.mark.parametrize("durable", [True, False])
def test_a_version_killed_mid_write_is_incomplete_and_nothing_is_half_written(tmp_path, durable):
    if not durable:
        if boot_id() is None:
            pytest.skip("no boot id on this system")
        mark_scratch(tmp_path, "test")
    mode = "durable" if durable else "scratch"
    run = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), mode, ",".join(FILES)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
    )
    assert run.returncode == 9, run.stdout.decode() + run.stderr.decode()
    store = LocalStore(tmp_path, durable=durable)
    prefix = "models/BTC/baseline_x"
    assert read_manifest(store, prefix) is None and not is_complete(store, prefix)
    written = [k for k in store.list(prefix)]
    assert len(written) == 2  # two whole files; the rest never reached their names
    for key in written:
        assert store.read_bytes(key) == FILES[key.rsplit("/", 1)[1]]
    store.clean_temporary()
    assert sorted(p.name for p in (tmp_path / prefix).iterdir()) == sorted(
        k.rsplit("/", 1)[1] for k in written
    )
    write_version(store, prefix, FILES, {"symbol": "BTC"})  # a rerun completes it
    assert is_complete(store, prefix)


def test_durable_false_is_refused_on_a_root_that_is_no_scratch_copy(tmp_path):
    LocalStore(tmp_path).write_bytes("champions/roster.json", b"{}")
    with pytest.raises(ConfigError, match="scratch.json"):
        LocalStore(tmp_path, durable=False)


@needs_boot_id
def test_a_scratch_store_skips_fsync_until_the_machine_restarts(tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    mark_scratch(tmp_path, "local:/somewhere")
    synced.clear()
    scratch = LocalStore(tmp_path, durable=False)
    scratch.write_many({"a.json": b"1", "b.json": b"2"})
    scratch.write_bytes("c.json", b"3")
    assert scratch.create_exclusive("d.json", b"4")
    assert synced == [] and scratch.read_bytes("c.json") == b"3"
    LocalStore(tmp_path).write_bytes("e.json", b"5")
    assert len(synced) == 1  # the same root, durable: fsynced
    mark = json.loads((tmp_path / SCRATCH_KEY).read_text())
    (tmp_path / SCRATCH_KEY).write_text(json.dumps({**mark, "boot_id": "an-earlier-boot"}))
    with pytest.raises(ConfigError, match="restarted"):
        LocalStore(tmp_path, durable=False)


@needs_boot_id
def test_a_dry_run_replays_on_a_scratch_copy_and_never_marks_the_source(tmp_path):
    source = LocalStore(tmp_path / "source")
    source.write_bytes("champions/roster.json", b'{"entries": []}')
    source.write_bytes("models/BTC/v/weights.safetensors", b"w")
    cfg = OmegaConf.create(
        {
            "store": {"_target_": "huracan.store.LocalStore", "root": str(source.root)},
            "replay": {"promote": False},
        }
    )
    out = tmp_path / "run"
    store, work_cfg = working_store(cfg, out, resumed=False)
    assert not store.durable and work_cfg.store.durable is False
    assert store.root == out / COPY_DIR
    assert store.read_bytes("models/BTC/v/weights.safetensors") == b"w"
    assert not source.exists(SCRATCH_KEY) and SCRATCH_KEY not in store.list("models")
    with pytest.raises(ConfigError):
        LocalStore(source.root, durable=False)
    mark = json.loads((store.root / SCRATCH_KEY).read_text())
    (store.root / SCRATCH_KEY).write_text(json.dumps({**mark, "boot_id": "an-earlier-boot"}))
    with pytest.raises(ConfigError, match="new run directory"):
        working_store(cfg, out, resumed=True)
    promoted = OmegaConf.merge(cfg, {"replay": {"promote": True}})
    assert working_store(promoted, out, resumed=False)[0].durable


def test_kept_bootstrap_draws_are_the_drawn_ones_and_read_only():
    fresh = block_draws.__wrapped__(30, 4, 200, 0)
    kept = block_draws(30, 4, 200, 0)
    assert np.array_equal(fresh, kept) and block_draws(30, 4, 200, 0) is kept
    with pytest.raises(ValueError):
        kept[0, 0] = 5
    rng = np.random.default_rng(1)
    day, pnl = np.repeat(np.arange(30), 4), rng.normal(size=(120, 2))
    trades = np.ones((120, 2))
    first = day_statistics(day, pnl, trades, 200, hold_days=3)
    again = day_statistics(day, pnl, trades, 200, hold_days=3)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again, strict=True))
