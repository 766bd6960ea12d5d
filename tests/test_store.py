"""Artifact stores: one behavioural suite for LocalStore and DropboxStore, then each one's own.

DropboxStore runs the real SDK client over tests/fake_dropbox.py, an in-memory Dropbox
mounted as the session's transport, so serialisation, status codes and errors are the SDK's.
"""

from __future__ import annotations

import hashlib
import os
import traceback

import dropbox
import pytest
import requests
from dropbox.content_hash import content_hash as sdk_content_hash
from omegaconf import OmegaConf

from huracan.config import build, check_component
from huracan.errors import ConfigError, HuracanError
from huracan.store import (
    ArtifactNotFound,
    InvalidArtifactKey,
    LocalStore,
    StoreError,
    content_hash,
)
from huracan.store.dropbox_store import DropboxStore
from tests.fake_dropbox import FakeDropboxAdapter

TOKEN = "sl.SECRET-test-token-4f9a"
CHUNK = 1024
CREDENTIAL_VARS = (
    "DROPBOX_ACCESS_TOKEN",
    "DROPBOX_REFRESH_TOKEN",
    "DROPBOX_APP_KEY",
    "DROPBOX_APP_SECRET",
)
UNSAFE_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../b",
    "a\\b",
    "a//b",
    "a/./b",
    "a/",
    ".x.tmp",
]


def sdk_client(fake: FakeDropboxAdapter, token: str = TOKEN) -> dropbox.Dropbox:
    session = requests.Session()
    session.mount("https://", fake)
    return dropbox.Dropbox(oauth2_access_token=token, session=session)


@pytest.fixture
def fake() -> FakeDropboxAdapter:
    return FakeDropboxAdapter(token=TOKEN)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def dbx(fake, waits) -> DropboxStore:
    return DropboxStore("/huracan", client=sdk_client(fake), chunk_size=CHUNK, sleep=waits.append)


@pytest.fixture(params=["local", "dropbox"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    return request.getfixturevalue("dbx")


@pytest.fixture
def no_credentials(monkeypatch):
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)


def full_text(exc: BaseException) -> str:
    """The exception as a user would see it: message, repr and the whole chained traceback."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


# The behavioural suite, for every store ------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5000])
def test_round_trip(store, size):
    data = os.urandom(size)
    store.write_bytes("models/BTC/baseline_20240101/weights.safetensors", data)
    assert store.read_bytes("models/BTC/baseline_20240101/weights.safetensors") == data
    assert store.exists("models/BTC/baseline_20240101/weights.safetensors")


@pytest.mark.parametrize("sizes", [(10, 20), (5000, 3000), (10, 5000)])
def test_write_replaces_old_content(store, sizes):
    for size in sizes:
        data = os.urandom(size)
        store.write_bytes("champions/BTC.json", data)
    assert store.read_bytes("champions/BTC.json") == data


def test_json_round_trip(store):
    roster = {"ranked": [{"symbol": "BTC", "rank": 1, "trade_ok": True, "net_bps": 3.5}]}
    store.write_json("champions/roster.json", roster)
    assert store.read_json("champions/roster.json") == roster


def test_read_json_names_the_key_of_a_non_json_file(store):
    store.write_bytes("meta/broken.json", b"{not json")
    with pytest.raises(StoreError, match="meta/broken.json"):
        store.read_json("meta/broken.json")


def test_missing_key_raises_artifact_not_found_naming_it(store):
    with pytest.raises(ArtifactNotFound, match="models/ETH/metrics.json") as info:
        store.read_bytes("models/ETH/metrics.json")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, HuracanError)
    assert store.describe() in str(info.value)
    assert not store.exists("models/ETH/metrics.json")


def test_a_folder_is_not_an_artifact(store):
    store.write_bytes("models/BTC/metrics.json", b"{}")
    assert not store.exists("models/BTC")
    with pytest.raises(ArtifactNotFound):
        store.read_bytes("models/BTC")


def test_list_is_recursive_sorted_and_scoped_to_a_folder(store):
    keys = [
        "models/BTCUSD/x.json",
        "models/BTC/b/metrics.json",
        "models/BTC/a/metrics.json",
        "champions/roster.json",
        "meta/feature_bank.json",
    ]
    for key in keys:
        store.write_bytes(key, key.encode())
    assert store.list() == sorted(keys)
    assert store.list("models/BTC") == ["models/BTC/a/metrics.json", "models/BTC/b/metrics.json"]
    assert store.list("models/BTC/") == store.list("models/BTC")
    assert store.list("models/SOL") == []
    assert store.list("champions/roster.json") == []


def test_list_of_an_empty_store(store):
    assert store.list() == []


def test_delete(store):
    store.write_bytes("champions/BTC.json", b"1")
    store.write_bytes("champions/ETH.json", b"2")
    store.delete("champions/BTC.json")
    store.delete("champions/BTC.json")  # already gone: no error
    store.delete("never/was.json")
    assert store.list() == ["champions/ETH.json"]


def test_delete_a_folder_removes_everything_below(store):
    for key in ["models/BTC/old/w.bin", "models/BTC/old/sub/m.json", "models/ETH/w.bin"]:
        store.write_bytes(key, b"x")
    store.delete("models/BTC/old")
    assert store.list() == ["models/ETH/w.bin"]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_rejected(store, key):
    for operation in (
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.write_json(key, {}),
    ):
        with pytest.raises(InvalidArtifactKey, match="artifact key"):
            operation()


@pytest.mark.parametrize("prefix", ["/abs", "../up", "a//b", "a\\b"])
def test_unsafe_list_prefixes_are_rejected(store, prefix):
    with pytest.raises(InvalidArtifactKey):
        store.list(prefix)


def test_repr_names_the_location(store):
    assert store.describe() in repr(store)


# LocalStore -----------------------------------------------------------------------------


def test_local_describe_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LocalStore().describe() == f"local:{tmp_path / 'artifacts'}"
    LocalStore().write_bytes("a.json", b"1")
    assert (tmp_path / "artifacts" / "a.json").read_bytes() == b"1"


def test_local_failed_write_keeps_old_content_and_leaves_no_temp_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    store.write_bytes("champions/roster.json", b"old roster")

    def disk_failure(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_failure)
    with pytest.raises(OSError, match="disk full"):
        store.write_bytes("champions/roster.json", b"new roster, half written")
    monkeypatch.undo()
    assert store.read_bytes("champions/roster.json") == b"old roster"
    assert os.listdir(tmp_path / "champions") == ["roster.json"]


def test_local_unsafe_keys_write_nothing(tmp_path):
    store = LocalStore(tmp_path / "root")
    for key in UNSAFE_KEYS:
        with pytest.raises(InvalidArtifactKey):
            store.write_bytes(key, b"x")
    assert list(tmp_path.rglob("*")) == []


def test_local_list_ignores_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("meta/feature_bank.json", b"{}")
    (tmp_path / "meta" / ".feature_bank.json.k2j4h.tmp").write_bytes(b"{")
    assert store.list() == ["meta/feature_bank.json"]


# DropboxStore: transfers -----------------------------------------------------------------


def test_local_clean_temporary_removes_only_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("models/BTC/a/manifest.json", b"{}")
    for name in ("models/BTC/a/.manifest.json.x1.tmp", ".lock.json.y.tmp", "meta/.b.json.z.tmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "models" / "notes.tmp").write_bytes(b"a user's file, not ours")
    assert store.clean_temporary() == 3
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "manifest.json",
        "notes.tmp",
    ]
    assert store.clean_temporary() == 0


def test_dropbox_files_land_under_the_root(dbx, fake):
    dbx.write_bytes("models/BTC/metrics.json", b"{}")
    assert fake.files == {"/huracan/models/BTC/metrics.json": b"{}"}
    assert dbx.describe() == "dropbox:/huracan"


def test_dropbox_small_files_use_one_upload(dbx, fake):
    dbx.write_bytes("a.bin", os.urandom(CHUNK))
    assert fake.calls == ["files/upload"]


def test_dropbox_large_files_use_an_upload_session(dbx, fake):
    data = os.urandom(3 * CHUNK + 7)
    dbx.write_bytes("models/BTC/weights.safetensors", data)
    assert fake.calls == [
        "files/upload_session/start",
        "files/upload_session/append_v2",
        "files/upload_session/append_v2",
        "files/upload_session/finish",
    ]
    assert fake.files["/huracan/models/BTC/weights.safetensors"] == data


def test_dropbox_list_follows_pages(dbx, fake):
    fake.page_size = 2
    keys = [f"models/{symbol}/{name}" for symbol in "ABCD" for name in ("m.json", "w.bin")]
    for key in keys:
        dbx.write_bytes(key, b"x")
    fake.calls.clear()
    assert dbx.list() == sorted(keys)
    assert fake.calls.count("files/list_folder/continue") >= 3


def test_dropbox_root_of_the_app_folder(fake):
    store = DropboxStore("/", client=sdk_client(fake))
    store.write_bytes("champions/roster.json", b"[]")
    assert fake.files == {"/champions/roster.json": b"[]"}
    assert store.list() == ["champions/roster.json"]
    assert store.describe() == "dropbox:/"


# DropboxStore: verification and retries --------------------------------------------------


def test_dropbox_corrupted_upload_is_caught_and_retried(dbx, fake, waits):
    data = os.urandom(2000)
    fake.corrupt_next(1)  # Dropbox stores altered bytes and reports their hash
    dbx.write_bytes("models/BTC/weights.bin", data)
    assert fake.files["/huracan/models/BTC/weights.bin"] == data
    assert waits == [1.0]


def test_dropbox_persistent_corruption_fails_clearly(dbx, fake, waits):
    fake.corrupt_next(100)
    with pytest.raises(StoreError, match="content hash mismatch") as info:
        dbx.write_bytes("models/BTC/weights.bin", b"weights")
    assert "/huracan/models/BTC/weights.bin" in str(info.value)
    assert "after 6 attempts" in str(info.value)
    assert len(waits) == 5


def test_dropbox_rejected_chunk_is_retried(dbx, fake, waits):
    data = os.urandom(3000)
    fake.garble_next(1)  # the SDK's content_hash no longer matches what arrives
    dbx.write_bytes("w.bin", data)
    assert fake.files["/huracan/w.bin"] == data
    assert waits == [1.0]


def test_dropbox_server_errors_are_retried_with_exponential_backoff(dbx, fake, waits):
    fake.fail_next(2, status=503)
    dbx.write_bytes("champions/roster.json", b"[]")
    fake.fail_next(1, status=500)
    assert dbx.read_bytes("champions/roster.json") == b"[]"
    assert waits == [1.0, 2.0, 1.0]


def test_dropbox_failure_mid_session_restarts_the_upload(dbx, fake, waits):
    data = os.urandom(3 * CHUNK)
    fake.fail_next(1, status=500, after=1)  # the first append
    dbx.write_bytes("w.bin", data)
    assert fake.files["/huracan/w.bin"] == data
    assert waits == [1.0]


def test_dropbox_persistent_server_error_fails_after_max_retries(dbx, fake, waits):
    fake.fail_next(100, status=500)
    with pytest.raises(StoreError, match="after 6 attempts: HTTP 500") as info:
        dbx.write_bytes("champions/roster.json", b"[]")
    assert "/huracan/champions/roster.json" in str(info.value)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert len(fake.calls) == 6
    assert fake.files == {}


def test_dropbox_rate_limit_honours_retry_after(dbx, fake, waits):
    fake.fail_next(1, status=429, retry_after=7)
    assert not dbx.exists("x.json")
    fake.fail_next(1, status=429)  # no Retry-After: the store's own backoff
    assert dbx.list() == []
    assert waits == [7.0, 1.0]


def test_dropbox_connection_errors_are_retried(dbx, fake, waits):
    dbx.write_bytes("a.json", b"1")
    fake.drop_next(2)
    assert dbx.read_bytes("a.json") == b"1"
    assert waits == [1.0, 2.0]


def test_dropbox_no_retries_when_max_retries_is_zero(fake, waits):
    store = DropboxStore(client=sdk_client(fake), max_retries=0, sleep=waits.append)
    fake.fail_next(1, status=503)
    with pytest.raises(StoreError, match="after 1 attempts"):
        store.delete("a.json")
    assert waits == []


def test_dropbox_auth_failure_is_clear_and_not_retried(fake, waits):
    store = DropboxStore(client=sdk_client(fake, token="sl.expired-or-revoked"), sleep=waits.append)
    with pytest.raises(ConfigError, match="Dropbox authentication failed") as info:
        store.read_bytes("champions/roster.json")
    assert "DROPBOX_ACCESS_TOKEN" in str(info.value)
    assert fake.calls == ["files/download"]
    assert waits == []


def test_dropbox_token_never_appears_in_repr_or_errors(fake, waits):
    store = DropboxStore(client=sdk_client(fake), max_retries=1, sleep=waits.append)
    assert TOKEN not in repr(store) + store.describe()
    failures = []

    def catch(operation):
        with pytest.raises(HuracanError) as info:
            operation()
        failures.append(info.value)

    catch(lambda: store.read_bytes("missing.json"))
    fake.fail_next(2, status=500)
    catch(lambda: store.write_bytes("a.json", b"1"))
    fake.corrupt_next(2)
    catch(lambda: store.write_bytes("a.json", b"1"))
    fake.drop_next(2)
    catch(store.list)
    fake.token = "sl.another-token"  # the client's TOKEN is now rejected
    catch(lambda: store.exists("a.json"))
    assert [type(failure) for failure in failures] == [ArtifactNotFound] + [StoreError] * 3 + [
        ConfigError
    ]
    for failure in failures:
        assert TOKEN not in full_text(failure)


# DropboxStore: credentials -------------------------------------------------------------


@pytest.fixture
def sdk_on_fake(monkeypatch, fake):
    """Routes clients the store builds itself to the fake; returns their keyword arguments."""
    made = []
    real_dropbox = dropbox.Dropbox

    def make(**kwargs):
        made.append(kwargs)
        session = requests.Session()
        session.mount("https://", fake)
        return real_dropbox(session=session, **kwargs)

    monkeypatch.setattr(dropbox, "Dropbox", make)
    return made


def test_dropbox_missing_credentials_is_a_config_error(no_credentials):
    with pytest.raises(ConfigError, match="DROPBOX_ACCESS_TOKEN") as info:
        DropboxStore()
    assert "DROPBOX_REFRESH_TOKEN" in str(info.value)
    assert "DROPBOX_APP_KEY" in str(info.value)


def test_dropbox_refresh_token_needs_an_app_key(no_credentials, monkeypatch):
    monkeypatch.setenv("DROPBOX_REFRESH_TOKEN", "refresh-secret")
    with pytest.raises(ConfigError, match="DROPBOX_APP_KEY") as info:
        DropboxStore()
    assert "refresh-secret" not in full_text(info.value)


def test_dropbox_access_token_from_the_environment(no_credentials, monkeypatch, sdk_on_fake):
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", TOKEN)
    store = DropboxStore(sleep=lambda seconds: None)
    store.write_bytes("a.json", b"1")
    assert store.read_bytes("a.json") == b"1"
    assert sdk_on_fake == [
        {"oauth2_access_token": TOKEN, "max_retries_on_error": 0, "max_retries_on_rate_limit": 0}
    ]
    assert TOKEN not in repr(store)


def test_dropbox_refresh_token_from_the_environment(no_credentials, monkeypatch, sdk_on_fake, fake):
    fake.refresh_token = "refresh-secret"
    monkeypatch.setenv("DROPBOX_REFRESH_TOKEN", "refresh-secret")
    monkeypatch.setenv("DROPBOX_APP_KEY", "app-key")
    monkeypatch.setenv("DROPBOX_APP_SECRET", "app-secret")
    store = DropboxStore()
    store.write_bytes("a.json", b"1")
    assert store.read_bytes("a.json") == b"1"
    assert fake.calls[0] == "/oauth2/token"
    assert sdk_on_fake[0]["app_secret"] == "app-secret"


def test_dropbox_bad_refresh_token_is_an_auth_error(no_credentials, monkeypatch, fake, waits):
    fake.refresh_token = "the-right-one"
    monkeypatch.setenv("DROPBOX_REFRESH_TOKEN", "refresh-secret")
    monkeypatch.setenv("DROPBOX_APP_KEY", "app-key")
    real_dropbox = dropbox.Dropbox
    session = requests.Session()
    session.mount("https://", fake)
    monkeypatch.setattr(
        dropbox, "Dropbox", lambda **kwargs: real_dropbox(session=session, **kwargs)
    )
    store = DropboxStore(sleep=waits.append)
    with pytest.raises(ConfigError, match="Dropbox authentication failed") as info:
        store.exists("a.json")
    assert "refresh-secret" not in full_text(info.value)
    assert waits == []


def test_dropbox_settings_that_cannot_work(fake):
    with pytest.raises(ConfigError, match="chunk_size"):
        DropboxStore(client=sdk_client(fake), chunk_size=0)
    with pytest.raises(ConfigError, match="max_retries"):
        DropboxStore(client=sdk_client(fake), max_retries=-1)
    with pytest.raises(InvalidArtifactKey):
        DropboxStore("/huracan/../elsewhere", client=sdk_client(fake))


# stores from the config group, and content_hash ---------------------------------------


def test_store_config_builds_each_store(tmp_path, fake):
    local = build({"_target_": "huracan.store.LocalStore", "root": str(tmp_path)})
    assert isinstance(local, LocalStore) and local.describe() == f"local:{tmp_path}"
    options = {"_target_": "huracan.store.dropbox_store.DropboxStore", "root": "/Apps/huracan"}
    remote = build(options, client=sdk_client(fake))
    assert isinstance(remote, DropboxStore) and remote.describe() == "dropbox:/Apps/huracan"


def test_store_config_rejects_unknown_options(tmp_path):
    node = OmegaConf.create({"_target_": "huracan.store.LocalStore", "rot": str(tmp_path)})
    with pytest.raises(ConfigError, match="store.rot is not an option of LocalStore"):
        check_component(node, "store")


def test_content_hash_follows_dropbox_algorithm():
    block = 4 * 2**20
    data = os.urandom(2 * block + 12345)  # two full blocks and a partial one
    digests = b"".join(
        hashlib.sha256(data[start : start + block]).digest() for start in range(0, len(data), block)
    )
    assert content_hash(data) == hashlib.sha256(digests).hexdigest()
    assert content_hash(data) == sdk_content_hash(data)
    one_block = data[:block]
    expected = hashlib.sha256(hashlib.sha256(one_block).digest()).hexdigest()
    assert content_hash(one_block) == expected
    assert content_hash(b"") == hashlib.sha256(b"").hexdigest()
