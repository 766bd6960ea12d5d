"""What makes a replay resumable and safe: its checkpoint, and the store it may write.

The checkpoint (``replay_state.json`` in the run directory) is rewritten whole and
atomically every ``replay.checkpoint_every`` bars and around every Mechanic cycle: the
next bar to replay, the book, the Mechanic's decisions so far and when it runs next. A
replay started again in the same run directory with the same options resumes from it; one
with other options refuses to (it would mix two replays).

``replay.promote=false`` (the default) replays on a copy of the store made in the run
directory (``store/``) while the source's lock is held, so the copy is one consistent
version and the source is never written; ``promote=true`` replays on the store itself,
whose lock the whole run holds (``ReplayPipeline.session``).

The copy is a scratch store (``store.durable=false``, ``LocalStore``): it is made and
written without fsync, since nothing outlives the replay that needs it. Every write is
still a rename of a whole file, so a killed replay resumes on a copy with nothing
half-written (the checkpoint, fsynced, never runs ahead of it: the page cache keeps what
a dead process wrote). A crash of the machine could tear it; the copy is marked with
the boot it was made in, and a replay resumed after a restart refuses it (replay into a
new run directory).
"""

from __future__ import annotations

import json
import logging
import shutil
from copy import deepcopy as copy_config
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from huracan.config import build
from huracan.errors import ConfigError
from huracan.io import atomic_write_text, plain
from huracan.store import LocalStore, Store, content_hash, mark_scratch
from huracan.store.base import SCRATCH_KEY
from huracan.store.lock import LOCK_KEY, store_lock

log = logging.getLogger("huracan")

STATE_FILE = "replay_state.json"
COPY_DIR = "store"
COPY_BATCH = 64  # files read into memory at once while copying a store


def fingerprint(cfg: DictConfig) -> str:
    """What must not change between a replay and its resumption: the data, the source
    store and every option that moves a trade."""
    parts = {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        for key in ("data", "store", "replay", "mechanic", "drift", "gates", "universe")
        if key in cfg
    }
    return content_hash(json.dumps(parts, sort_keys=True, default=str).encode())


def load_state(out: Path, cfg: DictConfig) -> dict | None:
    """The checkpoint of this run directory (None where there is none).

    Raises:
        ConfigError: the checkpoint belongs to a replay with other options.
    """
    path = out / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("fingerprint") != fingerprint(cfg):
        raise ConfigError(
            f"{path} is the checkpoint of a replay with other data, store or options: "
            "resume it with those, or replay into another run directory"
        )
    return state


def save_state(out: Path, state: dict) -> None:
    """The checkpoint, whole and atomically (a reader never sees half of it)."""
    atomic_write_text(out / STATE_FILE, json.dumps(state, default=plain))


def working_store(cfg: DictConfig, out: Path, resumed: bool) -> tuple[Store, DictConfig]:
    """The store the replay reads and the Mechanic writes, and the config that names it:
    the configured store itself (``replay.promote``), else its copy in the run directory
    (made once, under the source's lock; a resumed replay keeps its own copy)."""
    if cfg.replay.promote:
        return build(cfg.store), cfg
    copy = out / COPY_DIR
    if not (resumed and copy.is_dir()):
        source = build(cfg.store)
        partial = out / f".{COPY_DIR}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        mark_scratch(partial, source.describe())
        with store_lock(source, "replay (copying)"):
            copied = copy_store(source, LocalStore(partial, durable=False))
        shutil.rmtree(copy, ignore_errors=True)
        partial.rename(copy)
        log.info("dry run: %d files of %s copied to %s", copied, source.describe(), copy)
    work_cfg = copy_config(cfg)
    local = {"_target_": "huracan.store.LocalStore", "root": str(copy), "durable": False}
    OmegaConf.update(work_cfg, "store", local, merge=False, force_add=True)
    return LocalStore(copy, durable=False), work_cfg


def copy_store(source: Store, target: Store) -> int:
    """Every file of ``source`` but its lock into ``target``; returns how many."""
    keys = [k for k in source.list() if k not in (LOCK_KEY, SCRATCH_KEY)]
    for start in range(0, len(keys), COPY_BATCH):
        batch = keys[start : start + COPY_BATCH]
        target.write_many({key: source.read_bytes(key) for key in batch})
    if not keys:
        raise ConfigError(f"{source.describe()} is empty: no per-coin run to replay")
    return len(keys)
