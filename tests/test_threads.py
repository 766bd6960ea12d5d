from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from huracan.errors import ConfigError
from huracan.threads import (
    available_cores,
    default_threads,
    passive_wait_env,
    prepare_threads,
    resolve_threads,
    wide_threads,
)


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 2), (4, 3), (9, 8), (64, 8)])
def test_default_threads_leaves_one_core_and_is_capped(cores, threads):
    assert default_threads(cores) == threads


def test_default_threads_reads_this_process_cores():
    assert default_threads() == default_threads(available_cores())
    with pytest.raises(ValueError, match="cores"):
        default_threads(0)


def test_passive_wait_keeps_a_users_policy():
    assert passive_wait_env({})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert passive_wait_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    environ = {"A": "1"}
    passive_wait_env(environ)
    assert environ == {"A": "1"}  # a copy, the caller's mapping is left alone


@pytest.mark.parametrize(
    ("value", "cores", "threads"), [("auto", 2, 1), ("auto", 16, 8), (3, 2, 3)]
)
def test_threads_config_resolves_auto_by_the_rule_and_honours_a_number(value, cores, threads):
    assert resolve_threads(value, cores) == threads
    assert resolve_threads(None) is None  # torch's own default


@pytest.mark.parametrize("value", [0, -1, "four", 2.5, True])
def test_bad_threads_values_are_config_errors(value):
    with pytest.raises(ConfigError, match="threads="):
        resolve_threads(value)


def test_auto_sets_a_passive_wait_unless_the_user_chose_a_policy():
    environ = {}
    prepare_threads("auto", environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    prepare_threads("auto", environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}
    environ = {}
    prepare_threads(2, environ)
    assert environ == {}  # an explicit count sets the count only


def test_train_py_sets_the_wait_policy_before_torch_is_imported():
    # train.py's own imports, then what it does first in a run: torch must not be loaded yet
    code = "import sys, train; from huracan.threads import prepare_threads; "
    code += "print(prepare_threads('auto'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]


@pytest.mark.parametrize(
    ("setting", "threads", "policy"), [("auto", default_threads(), "PASSIVE"), ("3", 3, None)]
)
def test_a_run_uses_and_records_the_threads_it_was_given(tmp_path, setting, threads, policy):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    command = [sys.executable, "train.py", "pipeline=data", "data.n_assets=3", "data.years=0.2"]
    command += [f"threads={setting}", f"hydra.run.dir={tmp_path}"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    recorded = json.loads((tmp_path / "summary.json").read_text())["threads"]
    assert recorded["torch_threads"] == threads
    assert recorded["omp_wait_policy"] == policy


@pytest.mark.parametrize(("setting", "wide"), [("auto", min(available_cores(), 8)), (1, 1)])
def test_wide_work_gets_every_core_under_auto_only_and_the_count_comes_back(setting, wide):
    import torch

    from huracan.threads import apply_threads, wide_workers

    before = torch.get_num_threads()
    try:
        apply_threads(setting)
        outside = torch.get_num_threads()
        with wide_threads() as inside:
            assert inside == torch.get_num_threads() == wide
        assert torch.get_num_threads() == outside
        assert wide_workers() == wide  # FFD's numpy FFT gets the same count
    finally:
        apply_threads(None)  # no wide count left behind for later tests
        torch.set_num_threads(before)
