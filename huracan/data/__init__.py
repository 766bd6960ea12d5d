"""Market data: sources (files, exchange, synthetic), validation, alignment, gates.

The exchange source is ``huracan.data.exchange.CcxtSource``: only a run that uses it
imports ccxt.
"""

from huracan.data.align import build_panel
from huracan.data.files import CsvSource
from huracan.data.gates import GateReport, GateThresholds, apply_fold_gates, apply_gates
from huracan.data.panel import DropRecord, Panel
from huracan.data.synthetic import SyntheticMarket, SyntheticTruth

__all__ = [
    "CsvSource",
    "DropRecord",
    "GateReport",
    "GateThresholds",
    "Panel",
    "SyntheticMarket",
    "SyntheticTruth",
    "apply_fold_gates",
    "apply_gates",
    "build_panel",
]
