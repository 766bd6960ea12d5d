"""Credentials never reach the disk: every override scanned before Hydra writes .hydra/."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, run_config

from huracan.config import validate
from huracan.credentials import looks_like_token, read_credentials_file, refuse_secrets
from huracan.errors import ConfigError
from huracan.store.dropbox_store import CREDENTIALS, DropboxStore

TOKEN = "sl.u.AFk3Xq9ZpL2mVb7RtY4wNc8HdJ0sEa6GiO1lKy5Tn"  # planted: never in any output
RANDOM = "Zq8xN2pLk7VbW4mYc1RtH6sJd9Ga3Ef0"  # token-like without a known prefix

# the audit's four bypasses, and two more ways to the same place
BYPASSES = [
    f"+hydra.job.env_set.DROPBOX_ACCESS_TOKEN={TOKEN}",
    f"+extra={{token:'{TOKEN}'}}",
    f"+store.auth={{access_token:'{TOKEN}'}}",
    f"+store.dropbox_bearer={TOKEN}",
    f"+hydra.job.env_set.DBX={RANDOM}",
    "+extra=${oc.env:DROPBOX_ACCESS_TOKEN}",
]


@pytest.mark.parametrize("override", BYPASSES)
def test_train_py_refuses_each_bypass_and_writes_nothing(tmp_path, override):
    run = subprocess.run(
        [sys.executable, "train.py", override, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DROPBOX_ACCESS_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert (
        output.count("\n") == 1 and output.startswith("ConfigError: ") and "Traceback" not in output
    )
    assert TOKEN not in output and RANDOM not in output
    assert not (tmp_path / "run").exists()  # Hydra never started: no .hydra/, no summary
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    "override",
    [
        "+store.access_token=sl.s3cr3t",
        "++store.refresh_token=s3cr3t",
        "~store.password=s3cr3t",
        "+a.b={c:[1,{api_key:s3cr3t}]}",
        "pipeline.run_id=1,2,{private_key:s3cr3t}",
        f"data.path=/data/{RANDOM}/1h",
    ],
)
def test_nested_and_sweep_values_are_scanned(override):
    with pytest.raises(ConfigError, match="never config values") as err:
        refuse_secrets([override])
    assert "s3cr3t" not in str(err.value) and RANDOM not in str(err.value)


def test_ordinary_arguments_pass():
    refuse_secrets(
        [
            "-m",
            "pipeline=per_coin",
            "pipeline.run_id=v1,v2",
            "hydra.run.dir=/tmp/Huracan_Runs/2024-01-01T00:00:00Z",
            "hydra.job.env_set.TOKEN_FILE=/x",  # names a file, not a credential
            "store.credentials_file=~/.config/huracan/dropbox.env",
            "data.path=/Users/JohnSmith/MyCryptoData_Binance_2024/1h",
            "~store.password",  # deletes a key: no value to leak
            "+data.symbols=[BTC,ETH,1INCH]",
            "--cfg",
            "job",
        ]
    )
    # a hash is not a token (one case); a base64 token is
    assert not looks_like_token("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert looks_like_token(RANDOM) and looks_like_token(TOKEN)


def test_a_credential_in_a_config_file_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"store\.access_token holds a credential"):
        validate(run_config(tmp_path, "+store.access_token=x"))
    with pytest.raises(ConfigError, match=r"data\.note holds a value that looks like a token"):
        validate(run_config(tmp_path, f"+data.note={RANDOM}"))
    validate(run_config(tmp_path, "store=dropbox", "store.credentials_file=/x.env"))


def test_the_dropbox_store_reads_its_credentials_file_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPBOX_ACCESS_TOKEN", "from-the-environment")
    file = tmp_path / "dropbox.env"
    file.write_text(f"# Huracan's Dropbox app\nexport DROPBOX_ACCESS_TOKEN='{TOKEN}'\n\n")
    store = DropboxStore("/huracan", credentials_file=str(file))
    assert store._client._oauth2_access_token == TOKEN
    file.write_text(f"DROPBOX_TOKEN={TOKEN}\n")
    with pytest.raises(ConfigError, match=r"dropbox\.env, line 1: expected NAME=value") as err:
        read_credentials_file(file, CREDENTIALS)
    assert TOKEN not in str(err.value)
    file.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"needs credentials in .*dropbox\.env"):
        DropboxStore("/huracan", credentials_file=str(file))
    with pytest.raises(ConfigError, match="cannot be read"):
        DropboxStore("/huracan", credentials_file=str(tmp_path / "missing.env"))
