"""The per-coin run's pooled report: every coin's model beside the baselines, per window.

Each coin's job scores its model and every baseline (``scoring.baseline_metrics``) on
the coin's test bars of the selection window and of the report window, after the same
test costs. Here the coins are pooled per window and strategy: summed trades and net
bps, and the t-statistic and Sharpe ratio of the pooled daily P&L over every calendar day
of the window (a day without a trade counts as 0; trades of one day move together, so the
day is the unit of evidence). The criteria judge the report window, which chose nothing;
without one, the selection window (and say so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan import significance
from huracan.baseline_rule import gate_label, gated_peer
from huracan.report import above, fmt

DAYS_PER_YEAR = 365.25  # crypto trades every day: the pooled Sharpe is annualised by it


def pooled_report(
    coin_metrics: dict[str, dict],
    windows: dict[str, list[str] | None],
    rule: tuple[str, str | None] | None = None,
) -> dict:
    """The pooled figures, the criteria and a verdict.

    Args:
        coin_metrics: each coin's out-of-sample metrics of this run (its ``metrics.json``).
        windows: ``selection`` and ``report`` windows, ``[first, last]`` bar or None.
        rule: the baselines' ``baselines.rule`` and the ``thresholds.gate`` their cuts were
            chosen under (``baseline_rule.applied_gate``; ``search``: none), named in the
            best-baseline criterion; a verdict over a gated baseline says so.

    Returns:
        ``strategies`` ({window: {strategy: figures}}: ``coins``, ``coins_traded``,
        ``n_trades``, ``net_bps``, ``expectancy`` (a fraction), ``sharpe`` and ``t_stat``
        of the daily P&L, ``days``, ``by_day`` (False: some coin's daily P&L is unknown, so
        no t or Sharpe); None for a window the run lacks), ``baselines`` (the
        judged window's baselines, as the hierarchical summary has them),
        ``judged_window``, ``criteria`` and ``verdict``.
    """
    daily, strategies = {}, {}
    for window, span in windows.items():
        if span is None:
            strategies[window] = None
            continue
        days = pd.date_range(
            pd.Timestamp(span[0]).normalize(), pd.Timestamp(span[1]).normalize(), freq="D"
        )
        books = _books(coin_metrics, window)
        daily[window] = {k: _daily(v, days) for k, v in books.items()}
        strategies[window] = {k: _pool(v, daily[window][k]) for k, v in books.items()}
    judged = "report" if strategies.get("report") else "selection"
    table = strategies.get(judged) or {}
    criteria = _criteria(table, daily.get(judged, {}), judged, rule)
    return {
        "strategies": strategies,
        "baselines": {k: v for k, v in table.items() if k != "model"},
        "judged_window": judged,
        "criteria": criteria,
        "verdict": _verdict(table.get("model"), judged, criteria),
    }


def format_strategies(report: dict) -> str:
    """The pooled strategies as a fixed-width table, one row per window and strategy."""
    rows = []
    for window, table in report["strategies"].items():
        for name, figures in (table or {}).items():
            rows.append(
                f"{window:<10} {name:<16} {figures['coins_traded']:>6} {figures['n_trades']:>7} "
                f"{fmt(figures['net_bps'], 1):>10} {fmt(_bps(figures['expectancy']), 1):>9} "
                f"{fmt(figures['sharpe'], 2):>7} {fmt(figures['t_stat'], 2):>7}"
            )
    head = (
        f"{'window':<10} {'strategy':<16} {'coins':>6} {'trades':>7} {'net_bps':>10} "
        f"{'exp_bps':>9} {'sharpe':>7} {'t':>7}"
    )
    lines = [head, *rows, ""]
    lines += [f"[{c['result']}] {c['name']}: {c['value']}" for c in report["criteria"]]
    return "\n".join([*lines, report["verdict"]])


def _books(coin_metrics: dict[str, dict], window: str) -> dict[str, list[dict]]:
    """Per strategy, the coins' figures in ``window`` (coins without figures left out)."""
    books: dict[str, list[dict]] = {}
    for metrics in coin_metrics.values():
        figures = metrics if window == "selection" else metrics.get("report")
        if not figures:
            continue
        books.setdefault("model", []).append(figures)
        for name, baseline in (figures.get("baselines") or {}).items():
            if baseline is not None:
                books.setdefault(name, []).append(baseline)
    return books


def _daily(items: list[dict], days: pd.DatetimeIndex) -> pd.Series:
    """The coins' summed net bps per day of the window (and of any day a trade names)."""
    daily = pd.Series(0.0, index=[f"{d:%Y-%m-%d}" for d in days])
    for item in items:
        for day, bps in (item.get("daily_bps") or {}).items():
            daily[day] = daily.get(day, 0.0) + bps
    return daily.sort_index()


def _pool(items: list[dict], daily: pd.Series) -> dict:
    """Pooled figures; the t-statistic and Sharpe only where every coin with trades gave
    its daily P&L (a model version written before ``daily_bps`` existed did not)."""
    n_trades = sum(int(i.get("n_trades") or 0) for i in items)
    net = float(np.nansum([i.get("net_bps") or 0.0 for i in items]))
    by_day = all("daily_bps" in i for i in items if i.get("n_trades"))
    std = daily.std(ddof=1) if len(daily) > 1 and by_day else np.nan
    return {
        "coins": len(items),
        "coins_traded": sum(int(i.get("n_trades") or 0) > 0 for i in items),
        "n_trades": n_trades,
        "net_bps": round(net, 4),
        "expectancy": net / n_trades / 1e4 if n_trades else None,  # a fraction, as per coin
        "sharpe": float(daily.mean() / std * np.sqrt(DAYS_PER_YEAR)) if std > 0 else None,
        "t_stat": _finite(significance.t_stat(daily.to_numpy())) if by_day else None,
        "days": len(daily),
        "by_day": by_day,
    }


def _criteria(
    table: dict, daily: dict[str, pd.Series], window: str, rule: tuple[str, str | None] | None
) -> list[dict]:
    """Measured PASS/FAIL on ``window``; none PASSes on a loss or an unmeasured figure."""
    model = table.get("model")
    if model is None:
        return []
    criteria = [
        {
            "name": f"the coins' models make a significant profit ({window} window, t > 2)",
            "value": f"{fmt(model['net_bps'], 1)} bps, t {fmt(model['t_stat'], 2)}, "
            f"{model['n_trades']} trades",
            "passed": above(model["net_bps"], 0) and above(model["t_stat"], 2),
        }
    ]
    scores = {k: v["net_bps"] for k, v in table.items() if k != "model"}
    if scores:
        best = max(scores, key=scores.get)
        diff = daily["model"].sub(daily[best], fill_value=0.0).to_numpy()
        by_day = model["by_day"] and table[best]["by_day"]
        t = _finite(significance.t_stat(diff)) if by_day else None
        named = "" if rule is None else f"; baselines.rule={rule[0]} ({gate_label(rule[1])})"
        criteria.append(
            {
                "name": f"the models' profit > the best baseline's ({best}, {window} window, "
                f"t of the daily difference > 2{named})",
                "value": f"{fmt(model['net_bps'], 1)} vs {fmt(scores[best], 1)} bps, t {fmt(t, 2)}",
                "passed": above(model["net_bps"], 0) and above(t, 2),
                # a gated baseline trades less, also where it has an edge: a weaker peer
                "gated": rule is not None and gated_peer(best, rule[1]),
            }
        )
    for c in criteria:
        c["result"] = "PASS" if c["passed"] else "FAIL"
    return criteria


def _verdict(model: dict | None, window: str, criteria: list[dict]) -> str:
    """One line; "a significant edge" only where the baseline criterion passes too."""
    if model is None:
        return "no coin has out-of-sample figures: no verdict"
    if model["n_trades"] == 0:
        return (
            f"no edge in the {window} window: no coin's model traded there (no validation "
            "profit was significantly positive after costs, or no probability reached its "
            "threshold in the window): never trading is the honest answer for it; a coin's "
            "trade_ok rests on its selection window"
        )
    kind = "a significant edge" if above(model["t_stat"], 2) else "no significant edge"
    behind = [c for c in criteria if "best baseline" in c["name"] and not c["passed"]]
    if above(model["t_stat"], 2) and behind:
        kind = f"a significant profit but no edge over the best baseline ({behind[0]['value']})"
    beaten = [c for c in criteria if "best baseline" in c["name"] and c["passed"]]
    if above(model["t_stat"], 2) and not behind and any(c.get("gated") for c in beaten):
        kind += (
            " over baselines gated by the models' rule (weaker peers; baselines.rule="
            "uncorrected shows the search without the gate)"
        )
    return (
        f"{kind} in the {window} window: {model['n_trades']} trades of "
        f"{model['coins_traded']} coins, {fmt(model['net_bps'], 1)} bps net, t of daily P&L "
        f"{fmt(model['t_stat'], 2)}"
    )


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _bps(value: float | None) -> float | None:
    return None if value is None else value * 1e4
