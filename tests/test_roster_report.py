"""The roster's report window: figures from the days after selection, decisions not."""

from __future__ import annotations

import jsonschema

from huracan.registry.roster import ROSTER_SCHEMA, rank_entries, roster_entry

SELECTION = ["2024-01-01 00:00:00+00:00", "2024-01-24 23:00:00+00:00"]
REPORT = ["2024-01-25 00:00:00+00:00", "2024-01-31 23:00:00+00:00"]
COMMON = {
    "costs": {"base_spread_bps": 1.0, "fee_bps": 7.5, "expected_round_trip_bps": 20.0},
    "test_window": SELECTION,
    "gate_codes": [],
    "job_status": "completed",
    "job_reason": "",
    "daily_quote_volume": 1e7,
    "max_round_trip_bps": 40.0,
    "min_trades": 10,
}


def champion(selection: dict, report: dict | None):
    return {
        "model_path": "models/X/baseline_1",
        "window": SELECTION,
        "metrics": {"val_trades": 30, "window": SELECTION, **selection},
        "report": None if report is None else {"window": REPORT, **report},
    }


def test_figures_come_from_the_report_window_and_decisions_from_selection():
    good = {"n_trades": 12, "net_pnl_bps": 50.0, "sharpe": 1.5, "last_7d_net_bps": 9.0}
    lost = {
        "n_trades": 2,
        "net_pnl_bps": -30.0,
        "sharpe": -2.0,
        "hit_rate": 0.0,
        "last_7d_net_bps": -30.0,
        "avg_slip_bps": 0.7,
    }
    entry = roster_entry("X", champion=champion(good, lost), **COMMON)
    # the report window's loss does not take trade_ok away: it chose nothing
    assert entry["trade_ok"] and entry["reasons"] == []
    assert entry["figures"] == "report" and entry["report_window"] == REPORT
    assert (entry["sharpe"], entry["net_pnl_bps"], entry["n_trades"]) == (-2.0, -30.0, 2)
    assert entry["last_7d_net_bps"] == -30.0 and entry["avg_slip_bps"] == 0.7
    assert entry["selection"] == {
        "sharpe": 1.5,
        "net_pnl_bps": 50.0,
        "n_trades": 12,
        "window": SELECTION,
    }
    # and a selection failure is not rescued by a good report window
    bad = roster_entry("X", champion=champion({**good, "n_trades": 3}, good), **COMMON)
    assert bad["reasons"] == ["few_trades_in_test"] and bad["n_trades"] == 12
    roster = {"generated_at": "x", "run_id": "r", "entries": rank_entries([entry, bad])}
    jsonschema.validate(roster, ROSTER_SCHEMA)


def test_without_a_report_window_the_figures_say_in_selection():
    good = {"n_trades": 12, "net_pnl_bps": 50.0, "sharpe": 1.5}
    entry = roster_entry("X", champion=champion(good, None), **COMMON)
    assert entry["figures"] == "in_selection" and entry["report_window"] is None
    assert entry["sharpe"] == 1.5 and entry["n_trades"] == 12


def test_the_rank_reads_the_selection_window_not_the_report():
    a = roster_entry(
        "A",
        champion=champion(
            {"n_trades": 20, "net_pnl_bps": 90.0, "sharpe": 3.0}, {"sharpe": -1.0, "n_trades": 5}
        ),
        **COMMON,
    )
    b = roster_entry(
        "B",
        champion=champion(
            {"n_trades": 20, "net_pnl_bps": 20.0, "sharpe": 0.5}, {"sharpe": 4.0, "n_trades": 5}
        ),
        **COMMON,
    )
    assert [e["symbol"] for e in rank_entries([b, a])] == ["A", "B"]


def test_console_table_shows_selection_trades_beside_the_report_windows():
    from huracan.registry.roster import TABLE_FIELDS, format_table

    entry = {
        "rank": 1,
        "symbol": "XRP",
        "trade_ok": True,
        "figures": "report",
        "n_trades": 0,
        "selection": {"n_trades": 24},
        "reasons": [],
    }
    header, row = format_table([entry], TABLE_FIELDS).splitlines()
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["selection.n_trades"] == "24" and cells["n_trades"] == "0"
    assert cells["figures"] == "report" and cells["reasons"] == "-"


def test_a_coin_without_a_model_or_costs_ranks_after_those_with_one():
    """No coin may trade: a coin skipped before its costs were measured (no model, no
    round trip) read as the cheapest and ranked first; it now ranks after every coin with
    a model, and an unknown cost counts as the dearest known one."""
    losing = champion({"n_trades": 20, "net_pnl_bps": -90.0, "sharpe": -1.0}, None)
    costly = {**COMMON, "costs": {**COMMON["costs"], "expected_round_trip_bps": 60.0}}
    modelled = [roster_entry(s, champion=losing, **costly) for s in ("A", "B")]
    skipped = {**COMMON, "costs": {}, "job_status": "skipped", "daily_quote_volume": 1e9}
    bare = roster_entry("W", champion=None, **skipped)
    assert bare["model_path"] is None and bare["round_trip_bps"] is None
    assert not any(e["trade_ok"] for e in [*modelled, bare])
    ranked = rank_entries([bare, *modelled])
    assert [e["symbol"] for e in ranked] == ["A", "B", "W"]
    # its unknown cost scores as the dearest known one, not as 0
    free = rank_entries([{**bare, "round_trip_bps": 0.0}, *modelled])
    assert free[2]["score"] > ranked[2]["score"]
    # and the coins with a cost keep their order beside it: A (Sharpe 1, 10 bps) and B
    # (Sharpe 0.57, 5 bps) ranked B first when the unknown cost was filled in before the
    # costs were standardised (the known costs are standardised among themselves)
    a, b = (roster_entry(s, champion=losing, **costly) for s in ("A", "B"))
    a |= {"selection": {**a["selection"], "sharpe": 1.0}, "round_trip_bps": 10.0}
    b |= {"selection": {**b["selection"], "sharpe": 0.57}, "round_trip_bps": 5.0}
    for pair in ([a, b], [b, a]):
        assert [e["symbol"] for e in rank_entries(pair)] == ["A", "B"]
        assert [e["symbol"] for e in rank_entries([*pair, bare])] == ["A", "B", "W"]
