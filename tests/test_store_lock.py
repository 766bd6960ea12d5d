"""The artifact root's lock: one run at a time, stale locks taken over, a clear refusal."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from fake_dropbox import FakeDropboxAdapter
from test_per_coin_resume import config

from huracan.run import train
from huracan.store import LocalStore
from huracan.store.dropbox_store import DropboxStore
from huracan.store.lock import LOCK_KEY, StoreLocked, read_lock, store_lock


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped) on this host."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant(store, **fields) -> dict:
    holder = {
        "pid": os.getppid(),  # alive: the process that started the tests
        "host": socket.gethostname(),
        "run_id": "20240101",
        "token": "theirs",
        "started_at": "2024-01-01T00:00:00+00:00",
        "heartbeat_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        **fields,
    }
    store.write_bytes(LOCK_KEY, json.dumps(holder).encode())
    return holder


def test_a_second_holder_is_refused_with_one_line_naming_the_first(tmp_path):
    store = LocalStore(tmp_path)
    with store_lock(store, "A") as owner:
        assert read_lock(store)["token"] == owner["token"]
        with pytest.raises(StoreLocked) as err:
            with store_lock(store, "B"):
                pass
        message = str(err.value)
        assert "\n" not in message
        assert f"locked by run A (pid {os.getpid()} on {socket.gethostname()}" in message
    assert read_lock(store)["released_at"]  # released: marked, kept (generations only grow)
    with store_lock(store, "B"):  # and free again
        pass


def test_exactly_one_of_racing_runs_gets_the_lock(tmp_path):
    store = LocalStore(tmp_path)
    results, start = [], threading.Barrier(8)

    def race():
        start.wait()
        results.append(store.create_exclusive(LOCK_KEY, b"{}"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_the_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
    store = LocalStore(tmp_path)
    pid = dead_pid()
    plant(store, pid=pid)
    with caplog.at_level(logging.WARNING, "huracan"):
        with store_lock(store, "B") as owner:
            assert read_lock(store)["token"] == owner["token"]
    assert f"process {pid} on this host" in caplog.text


def test_a_live_holder_elsewhere_is_refused_until_its_heartbeat_is_stale(tmp_path):
    store = LocalStore(tmp_path)
    plant(store, host="elsewhere", pid=dead_pid())  # its pid means nothing here
    with pytest.raises(StoreLocked, match="on elsewhere"):
        with store_lock(store, "B"):
            pass
    plant(store, host="elsewhere", heartbeat_at="2024-01-01T00:00:00+00:00")
    with store_lock(store, "B", stale_after_s=600):
        pass


def test_the_heartbeat_keeps_the_lock_fresh(tmp_path):
    store = LocalStore(tmp_path)
    with store_lock(store, "A", heartbeat_s=0.05) as owner:
        first = read_lock(store)["heartbeat_at"]
        time.sleep(0.3)
        assert read_lock(store)["heartbeat_at"] > first
        assert read_lock(store)["token"] == owner["token"]


def test_a_locked_root_stops_a_per_coin_run_before_any_work(tmp_path):
    store = LocalStore(tmp_path / "artifacts")
    holder = plant(store)
    with pytest.raises(StoreLocked, match="locked by run 20240101"):
        train(config(tmp_path))
    assert store.list() == [LOCK_KEY]  # nothing else written
    assert not (tmp_path / "run" / "gates.json").exists()  # not even the data was read
    assert read_lock(store) == holder


def test_dropbox_lock_is_exclusive(monkeypatch):
    import dropbox.dropbox_client
    import requests

    adapter = FakeDropboxAdapter()

    def create_session(*args, **kwargs):
        session = requests.Session()
        session.mount("https://", adapter)
        return session

    monkeypatch.setattr(dropbox.dropbox_client, "create_session", create_session)
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", "test-token")
    monkeypatch.delenv("DROPBOX_REFRESH_TOKEN", raising=False)
    store = DropboxStore("/huracan")
    assert store.create_exclusive("lock.json", b"1")
    assert not store.create_exclusive("lock.json", b"2")
    assert store.read_bytes("lock.json") == b"1"
    store.delete("lock.json")
    plant(store)
    with pytest.raises(StoreLocked, match="dropbox:/huracan is locked"):
        with store_lock(store, "B"):
            pass
