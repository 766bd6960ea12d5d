from __future__ import annotations

import pytest

from huracan.threads import available_cores, default_threads, passive_wait_env


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
