"""Fencing: the lock's generation on every write, atomic takeovers, and a run that lost its
lock stopping before its next write (exit 3), on the local store and on Dropbox."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dropbox
import pytest
import requests
from dropbox import files
from dropbox.exceptions import ApiError
from fake_dropbox import FakeDropboxAdapter

from huracan.errors import LockLost
from huracan.queue import JobQueue
from huracan.store import LocalStore
from huracan.store.dropbox_store import DropboxStore
from huracan.store.fence import LOCK_KEY, Fence
from huracan.store.lock import (
    Lease,
    StoreLocked,
    _heartbeat,
    acquire,
    read_lock,
    release,
    run_lock,
    store_lock,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token"


def dropbox_store(adapter: FakeDropboxAdapter, **options) -> DropboxStore:
    """The real SDK client over the fake's transport, one session per store."""
    session = requests.Session()
    session.mount("https://", adapter)
    client = dropbox.Dropbox(oauth2_access_token=TOKEN, session=session)
    return DropboxStore("/huracan", client=client, **{"sleep": lambda s: None, **options})


@pytest.fixture
def adapter() -> FakeDropboxAdapter:
    return FakeDropboxAdapter(token=TOKEN)


@pytest.fixture(params=["local", "dropbox"])
def make_store(request, tmp_path):
    """Builds stores on one root: ``make_store(fence=...)``."""
    if request.param == "local":
        return lambda **options: LocalStore(tmp_path / "artifacts", **options)
    adapter = request.getfixturevalue("adapter")
    return lambda **options: dropbox_store(adapter, **options)


def fenced(make_store, lease: Lease):
    return make_store(fence=lease.fence.as_config())


def take_over(store, run_id: str = "B") -> Lease:
    """Another run takes the lock, as it would once the holder's heartbeat is stale."""
    time.sleep(0.01)  # the holder's heartbeat is then older than 0 s
    return acquire(store, run_id, stale_after_s=0.0)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_takeover_writes_the_next_generation(make_store):
    store = make_store()
    first = acquire(store, "A", stale_after_s=600)
    assert first.owner["generation"] == 1
    second = take_over(store)
    assert second.owner["generation"] == 2
    assert read_lock(store)["token"] == second.owner["token"]
    assert release(store, second)
    third = acquire(store, "C", stale_after_s=600)  # a released lock: free, no takeover
    assert third.owner["generation"] == 3


def test_after_a_takeover_the_old_holder_writes_nothing(make_store, tmp_path):
    store = make_store()
    lease_a = acquire(store, "A", stale_after_s=600)
    writer_a = fenced(make_store, lease_a)
    writer_a.write_bytes("champions/BTC.json", b'{"model_path": "models/BTC/baseline_A"}')
    writer_a.write_bytes("models/BTC/baseline_A/metrics.json", b"{}")

    lease_b = take_over(store)
    writer_b = fenced(make_store, lease_b)
    writer_b.write_bytes("champions/BTC.json", b'{"model_path": "models/BTC/baseline_B"}')
    before = {key: store.read_bytes(key) for key in store.list()}

    with pytest.raises(LockLost) as err:
        writer_a.write_bytes("champions/BTC.json", b'{"model_path": "models/BTC/baseline_A"}')
    message = str(err.value)
    assert "\n" not in message
    assert "generation 1" in message and "run B holds generation 2" in message
    assert "'champions/BTC.json'" in message
    with pytest.raises(LockLost):
        writer_a.write_json("champions/ETH.json", {})
    with pytest.raises(LockLost):
        writer_a.create_exclusive("champions/SOL.json", b"{}")
    with pytest.raises(LockLost):
        writer_a.delete("models/BTC/baseline_A")
    assert {key: store.read_bytes(key) for key in store.list()} == before
    if isinstance(store, LocalStore):  # it removes no one's temporary files, leaves none
        (tmp_path / "artifacts" / ".x.json.1.tmp").write_bytes(b"B's write in flight")
        with pytest.raises(LockLost):
            writer_a.clean_temporary()
        temporary = [p.name for p in (tmp_path / "artifacts").rglob("*.tmp")]
        assert temporary == [".x.json.1.tmp"]


def test_a_released_or_deleted_lock_fences_out_its_old_run(make_store):
    store = make_store()
    lease = acquire(store, "A", stale_after_s=600)
    writer = fenced(make_store, lease)
    assert release(store, lease)
    with pytest.raises(LockLost, match="lock was released"):
        writer.write_bytes("x.json", b"{}")
    store.delete(LOCK_KEY)  # by hand: the generations start again, the token still differs
    again = acquire(store, "A2", stale_after_s=600)
    assert again.owner["generation"] == 1
    with pytest.raises(LockLost, match="run A2 holds generation 1"):
        writer.write_bytes("x.json", b"{}")
    assert not store.exists("x.json")


def test_the_old_holders_heartbeat_cannot_take_the_lock_back(make_store):
    store = make_store()
    lease_a = acquire(store, "A", stale_after_s=600)
    lease_b = take_over(store)
    taken = store.read_versioned(LOCK_KEY)
    beat = threading.Thread(
        target=_heartbeat, args=(store, lease_a, 0.01, threading.Event()), daemon=True
    )
    beat.start()
    beat.join(10)
    assert not beat.is_alive() and lease_a.lost
    assert store.read_versioned(LOCK_KEY) == taken  # B's, untouched
    assert not release(store, lease_a)
    assert release(store, lease_b)  # and once B releases, A's old revision is still stale
    released = store.read_versioned(LOCK_KEY)
    assert store.swap(LOCK_KEY, b"{}", lease_a.version) is None
    assert store.read_versioned(LOCK_KEY) == released


def test_a_run_whose_lock_was_taken_meanwhile_ends_with_lock_lost(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(LockLost, match="taken over after its last write, by run B"):
        with store_lock(store, "A", heartbeat_s=0.02):
            take_over(store)
            time.sleep(0.2)  # A's heartbeat finds out
    assert read_lock(store)["run_id"] == "B"  # A released nothing of B's


def test_a_write_past_its_check_lands_before_the_takeover(tmp_path, monkeypatch):
    """The local store's check and rename hold the root's shared OS lock; a takeover needs
    the exclusive one, so it waits for the write in flight, then fences the next."""
    store = LocalStore(tmp_path)
    lease_a = acquire(store, "A", stale_after_s=600)
    writer_a = LocalStore(tmp_path, fence=lease_a.fence.as_config())
    in_rename, go_on = threading.Event(), threading.Event()
    real_replace = os.replace

    def slow_replace(source, target):
        if str(target).endswith("BTC.json"):
            in_rename.set()
            go_on.wait(10)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", slow_replace)
    leases: list[Lease] = []
    write = threading.Thread(target=writer_a.write_bytes, args=("champions/BTC.json", b"A"))
    write.start()
    assert in_rename.wait(10)
    takeover = threading.Thread(target=lambda: leases.append(take_over(store)))
    takeover.start()
    time.sleep(0.3)
    assert takeover.is_alive() and not leases  # waiting for the write in flight
    go_on.set()
    write.join(10)
    takeover.join(10)
    assert leases[0].owner["generation"] == 2
    assert store.read_bytes("champions/BTC.json") == b"A"
    with pytest.raises(LockLost):
        writer_a.write_bytes("champions/BTC.json", b"A again")
    assert store.read_bytes("champions/BTC.json") == b"A"


def test_run_lock_puts_the_fence_in_the_store_config(tmp_path):
    from omegaconf import OmegaConf

    from huracan.config import build

    store_cfg = OmegaConf.create({"_target_": "huracan.store.LocalStore", "root": str(tmp_path)})
    OmegaConf.set_struct(store_cfg, True)
    with run_lock(store_cfg, "A") as owner:
        built = build(store_cfg)  # as a coin's job builds its store in a worker
        assert built.fence == Fence.of(owner)
        built.write_bytes("x.json", b"{}")
    assert "fence" not in store_cfg


def test_lock_settings_are_checked(tmp_path):
    from huracan.errors import ConfigError

    with pytest.raises(ConfigError, match="lock_heartbeat_s"):
        LocalStore(tmp_path, lock_heartbeat_s=600, lock_stale_after_s=60)


def lose_the_lock(job: dict) -> dict:
    if job["symbol"] == "B":
        raise LockLost("the lock was taken over")
    return {}


def test_a_job_that_finds_the_lock_taken_stops_the_queue(tmp_path):
    jobs = [{"symbol": s} for s in ("A", "B", "C")]
    with pytest.raises(LockLost):
        JobQueue(workers=1, progress=False, log_dir=tmp_path).run(lose_the_lock, jobs)
    assert (tmp_path / "B.log").exists() and (tmp_path / "C.log").read_text() == ""


def test_a_job_that_finds_the_lock_taken_stops_the_dask_queue():
    from huracan.queue import DaskQueue

    jobs = [{"symbol": s} for s in ("A", "B", "C")]
    with pytest.raises(LockLost):
        DaskQueue(workers=2, progress=False).run(lose_the_lock, jobs)


# Dropbox: the fake honours update-mode revisions as the real service does ---------------


def test_the_fake_refuses_an_update_from_a_stale_rev_with_the_sdks_conflict(adapter):
    store = dropbox_store(adapter)
    client = store._client
    first = client.files_upload(b"1", "/huracan/lock.json", mode=files.WriteMode.add)
    second = client.files_upload(b"2", "/huracan/lock.json", mode=files.WriteMode.update(first.rev))
    assert second.rev != first.rev
    with pytest.raises(ApiError) as err:
        client.files_upload(b"3", "/huracan/lock.json", mode=files.WriteMode.update(first.rev))
    error = err.value.error
    assert isinstance(error, files.UploadError) and error.get_path().reason.is_conflict()
    assert error.get_path().reason.get_conflict().is_file()
    # identical content is no conflict and makes no new revision (Dropbox's WriteMode doc)
    same = client.files_upload(b"2", "/huracan/lock.json", mode=files.WriteMode.update(first.rev))
    assert same.rev == second.rev
    assert store.swap(LOCK_KEY, b"4", first.rev) is None
    assert store.swap(LOCK_KEY, b"4", second.rev) is not None
    assert store.read_bytes(LOCK_KEY) == b"4"


def test_a_retried_dropbox_upload_checks_the_fence_again(adapter):
    """A takeover during the backoff before a retry: the retry is refused."""
    store = dropbox_store(adapter)
    lease_a = acquire(store, "A", stale_after_s=600)
    writer_a = dropbox_store(
        adapter,
        sleep=lambda seconds: take_over(store),  # B takes over while A waits to retry
        fence=lease_a.fence.as_config(),
    )
    adapter.fail_next(1, status=503, after=1)  # the fence check passes, the upload fails
    with pytest.raises(LockLost, match="run B holds generation 2"):
        writer_a.write_bytes("champions/BTC.json", b"A")
    assert not store.exists("champions/BTC.json")


def test_dropbox_takeover_race_has_one_winner(adapter):
    """40 trials, 4 threads each with its own client, over one stale lock."""
    contenders, trials = 4, 40
    stores = [dropbox_store(adapter) for _ in range(contenders)]
    start = threading.Barrier(contenders)
    doubles = 0
    for trial in range(trials):
        stores[0].write_bytes(LOCK_KEY, stale_lock(trial + 1, host="elsewhere"))
        won: list[str] = []

        def contend(store, won):
            start.wait()
            try:
                won.append(acquire(store, "B", stale_after_s=600).owner["token"])
            except StoreLocked:
                pass

        threads = [threading.Thread(target=contend, args=(s, won)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        doubles += len(won) > 1
        assert len(won) >= 1
        assert read_lock(stores[0])["token"] in won
        assert read_lock(stores[0])["generation"] == trial + 2
    assert doubles == 0


# The takeover race between processes -------------------------------------------------------


def stale_lock(generation: int, host: str | None = None, pid: int | None = None) -> bytes:
    """A lock nobody holds: a dead process on this host, or an old heartbeat elsewhere."""
    holder = {
        "pid": pid if pid is not None else 1,
        "host": host or socket.gethostname(),
        "run_id": "dead",
        "token": f"dead-{generation}",
        "generation": generation,
        "started_at": "2024-01-01T00:00:00+00:00",
        "heartbeat_at": (
            "2024-01-01T00:00:00+00:00"
            if host
            else time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        ),
    }
    return json.dumps(holder).encode()


def contend(root: str, trials: int, start, answers) -> None:
    """A contender process: at each trial, tries to take the planted dead lock over."""
    store = LocalStore(root)
    for trial in range(trials):
        start.wait()
        try:
            answers.put((trial, acquire(store, f"p{os.getpid()}", stale_after_s=600).owner))
        except StoreLocked:
            answers.put((trial, None))
        start.wait()


def test_takeover_race_between_processes_has_one_winner(tmp_path):
    """40 trials, 3 processes each, over a lock whose pid is dead: 0 with two holders."""
    contenders, trials = 3, 40
    store = LocalStore(tmp_path)
    context = multiprocessing.get_context("spawn")
    start, answers = context.Barrier(contenders + 1), context.Queue()
    processes = [
        context.Process(target=contend, args=(str(tmp_path), trials, start, answers))
        for _ in range(contenders)
    ]
    for process in processes:
        process.start()
    pid = dead_pid()
    holders_per_trial = []
    try:
        for trial in range(trials):
            store.write_bytes(LOCK_KEY, stale_lock(trial + 1, pid=pid))
            start.wait(60)  # go
            start.wait(60)  # all answered
            owners = [answers.get(timeout=60)[1] for _ in range(contenders)]
            winners = [owner for owner in owners if owner is not None]
            holders_per_trial.append(len(winners))
            if len(winners) == 1:
                assert read_lock(store)["token"] == winners[0]["token"]
                assert winners[0]["generation"] == trial + 2
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert holders_per_trial == [1] * trials


# A paused run (SIGSTOP) loses its lock, and writes nothing after -------------------------


def run_overrides(tmp_path: Path, run_id: str, seed: int) -> list[str]:
    return [
        "pipeline=per_coin",
        "debug=fast",
        "data.n_assets=4",
        f"seed={seed}",
        f"pipeline.run_id={run_id}",
        "pipeline.test_days=20",
        "trainer.enable_progress_bar=false",
        "thresholds.min_trades=5",
        "pipeline.champion_min_trades=3",
        f"store.root={tmp_path / 'artifacts'}",
        "store.lock_heartbeat_s=0.2",
        "store.lock_stale_after_s=1.5",
        f"logger.save_dir={tmp_path / 'tb'}",
    ]


def snapshot(store: LocalStore) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.list()}


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")
def test_a_paused_run_loses_its_lock_writes_nothing_more_and_exits_3(tmp_path):
    """Run A (a real ``train.py``) is stopped once it holds the lock; run B takes the
    stale lock over and runs to the end on another market; A, continued, must stop at its
    next write with one line and exit 3, leaving the store exactly as B left it."""
    from conftest import run_config

    from huracan.run import train

    store = LocalStore(tmp_path / "artifacts")
    run_a = subprocess.Popen(
        [sys.executable, "train.py", *run_overrides(tmp_path, "A", seed=1)]
        + [f"hydra.run.dir={tmp_path / 'run_a'}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (read_lock(store) or {}).get("run_id") != "A":
            assert run_a.poll() is None and time.monotonic() < deadline, "A never took the lock"
            time.sleep(0.01)
        run_a.send_signal(signal.SIGSTOP)
        written_by_a = set(store.list()) - {LOCK_KEY}
        time.sleep(2.0)  # past store.lock_stale_after_s: A's heartbeat is silent

        train(run_config(tmp_path, *run_overrides(tmp_path, "B", seed=0)))
        as_b_left_it = snapshot(store)
        assert read_lock(store)["run_id"] == "B" and read_lock(store)["generation"] == 2

        run_a.send_signal(signal.SIGCONT)
        output, _ = run_a.communicate(timeout=120)
    finally:
        if run_a.poll() is None:
            run_a.kill()
            run_a.wait()
    assert run_a.returncode == 3, output[-3000:]
    lost = [line for line in output.splitlines() if "LockLost" in line]
    assert len(lost) == 1 and "Traceback" not in output, output[-3000:]
    assert "run B holds generation 2" in lost[0]

    assert snapshot(store) == as_b_left_it  # A wrote, and released, nothing after B
    roster = store.read_json("champions/roster.json")
    assert roster["run_id"] == "B"
    pointers = [k for k in store.list("champions") if k != "champions/roster.json"]
    assert pointers
    for key in pointers:
        assert store.read_json(key)["model_path"].endswith("/baseline_B"), key
    for entry in roster["entries"]:
        assert entry["model_path"] is None or entry["model_path"].endswith("/baseline_B")
    assert not [key for key in store.list() if "baseline_A" in key]
    assert not (set(store.list("runs/A")) - written_by_a)  # only what A wrote before its pause
