"""``pipeline=replay``: the live loop stepped bar by bar over history.

From an artifact root written by ``pipeline=per_coin`` (``store=...``) and the bars of
``data=...``, for every bar t from ``replay.start`` on, at its close:

1. trades due at t exit at t's close (``book``: the entry price rule);
2. the signal service scores the bars up to t only, with the open positions, so that
   ``trade`` is a new entry exactly as the per-coin backtest takes one (no overlap; expiry,
   ``respect_trade_ok``, the drift action and a factor input whose symbols have no bar at
   t, their files ending before it, decide the rest); each entry is priced at the
   coin's calibrated costs. ``replay.precompute=true`` (default): the serving path's
   inputs and probabilities computed once over the window (``huracan.serve.tape``: equal
   to the per-bar call, tested), its rules (``Fleet.decisions``) applied at each bar;
   ``false``: ``Fleet.signals`` itself on the last ``bars_needed`` bars at every bar
   (the champions' own warm-up; slower by the warm-up's length);
3. every ``mechanic.every_hours`` of replayed bars, one Mechanic cycle
   (``huracan.pipelines.mechanic.run.run_cycle``) on the bars up to t; the fleet is loaded
   again from the store, so a promotion trades from bar t + 1, and every coin's costs are
   calibrated again on the bars before t + 1 (each when the replay first prices it,
   ``book.FleetCosts``). ``replay.reuse_inputs=true`` (default): the
   cycle works on the replay's fleet and its arrays and inputs computed once on all bars
   (``cycles.CycleInputs``: the same values, tested), and the reload reads only the
   coins whose champion pointer the cycle changed; ``false``: each cycle loads the fleet
   and computes them over all its bars, as ``pipeline=mechanic`` does.

Each bar's wall time is logged and kept in ``equity.csv``. The checkpoint (``state``)
makes a stopped replay resume where it stopped; ``report`` writes the outputs.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from huracan.config import build
from huracan.data import GateReport, Panel
from huracan.data.panel import to_utc
from huracan.errors import ConfigError
from huracan.lead_fit import refuse_lead_fit
from huracan.pipelines.base import Pipeline
from huracan.pipelines.mechanic.drift import check_levels
from huracan.pipelines.mechanic.run import run_cycle, summary_of
from huracan.pipelines.replay.book import Book, FleetCosts
from huracan.pipelines.replay.cycles import CycleInputs
from huracan.pipelines.replay.report import format_summary, write_outputs
from huracan.pipelines.replay.state import fingerprint, load_state, save_state, working_store
from huracan.report import StageTimer
from huracan.serve import Fleet, ServeConfig
from huracan.serve.tape import SignalTape
from huracan.store.lock import run_lock

log = logging.getLogger("huracan")


@dataclass(frozen=True)
class ReplayOptions:
    """The ``replay`` options (documented in ``conf/pipeline/replay.yaml``)."""

    start: str | None = None
    end: str | None = None
    mechanic: bool = True
    promote: bool = False
    expire_hours: float | None = 168.0
    drift_action: str = "warn"
    respect_trade_ok: bool = True
    checkpoint_every: int = 24
    precompute: bool = True
    reuse_inputs: bool = True


class Replay:
    """One replay's moving parts: the bars, the store, the fleet, costs and the book."""

    def __init__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, state: dict | None
    ):
        self.panel, self.gates, self.out, self.source_cfg = panel, gates, out, cfg
        self.options = ReplayOptions(**cfg.replay)
        self.store, self.cfg = working_store(cfg, out, resumed=state is not None)
        self.serve = ServeConfig(
            expire_hours=self.options.expire_hours,
            max_psi=float(cfg.drift.max_psi),
            drift_action=self.options.drift_action,
        )
        self.step = pd.Timedelta(panel.timeframe)
        self.cycle_inputs = CycleInputs(panel) if self.options.reuse_inputs else None
        self.fleet = self.load_fleet()
        if self.options.mechanic:  # its cycles' cluster.levels, checked before any bar
            check_levels(self.fleet, cfg)
        state = state or self.fresh_state()
        self.first, self.end = state["first_row"], state["end_row"]
        self.next_row, self.book = state["next_row"], Book.from_dict(state["book"])
        self.cycles, self.next_cycle = state["cycles"], pd.Timestamp(state["next_cycle"])
        self.cycle_pending = state["cycle_pending"]
        self.costs = FleetCosts(panel, self.fleet.models, state["costs_row"])
        self.costs_row = state["costs_row"]
        self.tape = None
        if self.options.precompute:
            self.tape = SignalTape(self.fleet, panel, self.next_row, self.end)

    def load_fleet(self, reuse: Fleet | None = None) -> Fleet:
        fleet = Fleet.load(self.store, config=self.serve, reuse=reuse)
        if not fleet.models:
            raise ConfigError(f"{self.store.describe()}: no roster coin has a usable champion")
        return fleet

    def fresh_state(self) -> dict:
        first, end = replay_rows(self.panel, self.fleet, self.options)
        start = self.panel.timestamps[first]
        return {
            "first_row": first,
            "end_row": end,
            "next_row": first,
            "book": Book().to_dict(),
            "cycles": [],
            "next_cycle": start + pd.Timedelta(hours=float(self.cfg.mechanic.every_hours)),
            "cycle_pending": False,
            "costs_row": first,
        }

    def state(self) -> dict:
        return {
            "fingerprint": fingerprint(self.source_cfg),
            "first_row": self.first,
            "end_row": self.end,
            "next_row": self.next_row,
            "book": self.book.to_dict(),
            "cycles": self.cycles,
            "next_cycle": self.next_cycle.isoformat(),
            "cycle_pending": self.cycle_pending,
            "costs_row": self.costs_row,
        }

    def run(self, timer: StageTimer) -> None:
        """Replays the bars from the checkpoint's next one to the end."""
        if self.cycle_pending:  # stopped during a cycle: finish it on the same bars
            self.mechanic(self.next_row - 1, timer)
        every = max(int(self.options.checkpoint_every), 1)
        while self.next_row < self.end:
            t = self.next_row
            self.bar(t)
            self.next_row = t + 1
            close_time = self.panel.timestamps[t] + self.step
            if self.options.mechanic and close_time >= self.next_cycle and t + 1 < self.end:
                self.mechanic(t, timer)
            elif (t + 1 - self.first) % every == 0:
                save_state(self.out, self.state())
        save_state(self.out, self.state())

    def bar(self, t: int) -> None:
        """Bar t's close: exits, signals on the bars up to t, entries, the equity row."""
        started = time.perf_counter()
        panel, fleet = self.panel, self.fleet
        closed = self.book.close_due(panel, t)
        held = self.book.positions()
        called = time.perf_counter()
        if self.tape is not None:
            signals = self.tape.signals(t, held)
        else:
            lo = max(t + 1 - fleet.bars_needed, 0)
            window = panel.between(panel.timestamps[lo], panel.timestamps[t] + self.step)
            signals = fleet.signals(window, held)
        served = time.perf_counter() - called  # the signal step alone
        entered = 0
        for row in signals.to_dict("records"):
            if row["symbol"] in held or not self.may_enter(row):
                continue
            self.book.enter(panel, t, row, self.costs[row["symbol"]])
            entered += 1
        wall = time.perf_counter() - started
        self.book.record(
            panel,
            t,
            entries=entered,
            exits=closed,
            signals_s=round(served, 4),
            wall_s=round(wall, 4),
        )
        log.info(
            "replay %s: %d in, %d out, %d open, %.1f bps realised; signals %.3f s, bar %.3f s",
            panel.timestamps[t],
            entered,
            closed,
            len(self.book.open),
            self.book.realized_bps,
            served,
            wall,
        )

    def may_enter(self, row: dict) -> bool:
        """A signal the replay enters: ``trade``; with ``respect_trade_ok=false`` also one
        whose only reasons are the roster's. Never a coin it cannot price (asked last: a
        coin's costs are calibrated when it is first priced)."""
        return self.wants(row) and row["symbol"] in self.costs

    def wants(self, row: dict) -> bool:
        if row["trade"]:
            return True
        if self.options.respect_trade_ok or row["probability"] is None:
            return False
        others = [r for r in row["reasons"] if not r.startswith("roster: ")]
        return (
            not others and row["threshold"] is not None and row["probability"] >= row["threshold"]
        )

    def mechanic(self, t: int, timer: StageTimer) -> None:
        """One Mechanic cycle on the bars up to t; its promotions trade from bar t + 1."""
        self.cycle_pending = True
        save_state(self.out, self.state())  # a cycle cut short is redone on the same bars
        started = time.perf_counter()
        upto = self.panel.between(None, self.panel.timestamps[t] + self.step)
        reuse = self.fleet if self.cycle_inputs is not None else None
        report = run_cycle(upto, self.gates, self.cfg, timer, reuse, self.cycle_inputs)
        report = {"cycle": len(self.cycles) + 1, "after_bar": str(upto.timestamps[-1]), **report}
        self.fleet = self.load_fleet(reuse)
        if self.tape is not None:  # the promoted coins' probabilities from bar t + 1 on
            self.tape.refresh(self.fleet, t + 1)
        report["serving"] = {s: m.model_path for s, m in self.fleet.models.items()}
        self.costs_row = t + 1
        self.costs = FleetCosts(self.panel, self.fleet.models, self.costs_row)
        # the cycle with what the replay does after it: reload, recompute, recalibrate
        report["seconds"] = round(time.perf_counter() - started, 2)
        self.cycles.append(report)
        every = pd.Timedelta(hours=float(self.cfg.mechanic.every_hours))
        # after a hole in the bars: the next cycle due, not a backlog of missed ones
        while self.next_cycle <= upto.timestamps[-1] + self.step:
            self.next_cycle += every
        self.cycle_pending = False
        save_state(self.out, self.state())
        log.info("replay mechanic after %s: %s", upto.timestamps[-1], summary_of(report)["counts"])


def replay_rows(panel: Panel, fleet: Fleet, options: ReplayOptions) -> tuple[int, int]:
    """The first grid row replayed and the row after the last.

    Raises:
        ConfigError: the window is empty, or starts inside some champion's training data
            (its replay would be in sample).
    """
    start = to_utc(options.start) if options.start else default_start(fleet)
    seen = {s: m.data_end for s, m in fleet.models.items() if m.data_end >= start}
    if seen:
        symbol, end = max(seen.items(), key=lambda item: item[1])
        raise ConfigError(
            f"replay.start {start} is inside the training data of {len(seen)} champion(s) "
            f"(e.g. {symbol}'s ends {end}): start after it, the replay must be out of sample"
        )
    first = int(panel.timestamps.searchsorted(start, "left"))
    end = panel.n_bars
    if options.end:
        end = int(panel.timestamps.searchsorted(to_utc(options.end), "left"))
    if first >= end:
        raise ConfigError(
            f"replay window {start}..{options.end or panel.timestamps[-1]} holds no bar of the "
            f"data ({panel.timestamps[0]}..{panel.timestamps[-1]})"
        )
    return first, end


def default_start(fleet: Fleet) -> pd.Timestamp:
    """The first bar of the champions' test window (the latest, where runs differ): the
    per-coin run's own out-of-sample window."""
    starts = [
        pd.Timestamp(m.description["test_window"][0])
        for m in fleet.models.values()
        if m.description.get("test_window")
    ]
    if not starts:
        raise ConfigError("the champions record no test window: set replay.start")
    return max(starts)


def run_replay(
    panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
) -> dict:
    """The replay (resumed from ``out``'s checkpoint where there is one) and its outputs."""
    state = load_state(out, cfg)
    if state is not None:
        log.info("resuming the replay in %s at grid row %d", out, state["next_row"])
    replay = Replay(panel, gates, cfg, out, state)
    with timer("replay") as note:
        replay.run(timer)
        note(f"{replay.end - replay.first} bars, {len(replay.book.trades)} trades")
    summary = write_outputs(replay, out)
    log.info("replay beside the baselines (same bars, same costs)\n%s", format_summary(summary))
    return {"replay": summary}


class ReplayPipeline(Pipeline):
    """``pipeline=replay``: the live loop over history (see the module docstring); options
    in the ``replay``, ``mechanic`` and ``drift`` sections."""

    services = ("store",)

    def session(self, cfg: DictConfig):
        """``replay.promote``: the store's lock for the whole run, as the Mechanic holds it,
        with its fence in ``cfg.store`` so every store the run builds is fenced; a dry run
        holds it only while it copies the store (``state.working_store``)."""
        return run_lock(cfg.store, "replay") if cfg.replay.promote else nullcontext()

    def test_start(self, panel: Panel, cfg: DictConfig):
        """The first replayed bar: the data gates look at the bars before it."""
        if cfg.replay.start:
            return to_utc(cfg.replay.start)
        return default_start(Fleet.load(build(cfg.store), config=ServeConfig(expire_hours=None)))

    def check(self, cfg: DictConfig) -> None:
        refuse_lead_fit(cfg, "replay")
        options = cfg.get("replay")
        if options is None or cfg.get("mechanic") is None or cfg.get("drift") is None:
            raise ConfigError("pipeline=replay needs its replay, mechanic and drift sections")
        unknown = set(options) - set(ReplayOptions.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown replay option(s) {sorted(unknown)}")
        if options.drift_action not in ("warn", "block"):
            raise ConfigError(
                f"replay.drift_action must be warn or block, got {options.drift_action!r}"
            )
        if options.checkpoint_every < 1:
            raise ConfigError(
                f"replay.checkpoint_every must be >= 1, got {options.checkpoint_every}"
            )
        if options.mechanic and cfg.mechanic.every_hours <= 0:
            raise ConfigError("replay.mechanic needs mechanic.every_hours > 0")

    def __call__(
        self, panel: Panel, gates: GateReport, cfg: DictConfig, out: Path, timer: StageTimer
    ) -> dict:
        return run_replay(panel, gates, cfg, out, timer)
