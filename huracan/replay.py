"""The live loop replayed over history: ``pipeline=replay`` from the command line.

python -m huracan.replay --root artifacts --data DIR [--start TIME] [--end TIME]
                         [--out DIR] [--no-mechanic] [--promote] [KEY=VALUE ...]

--root is the artifact root a per-coin run wrote; --data a directory of per-symbol bar
files (the input contract of data=csv; without it, the config's data source). From
--start (default: the champions' own test window) to --end (default: the last bar), each
bar's close runs the signal service on the bars up to it, opens and closes positions at
each coin's calibrated costs, and (unless --no-mechanic) runs the Mechanic every
mechanic.every_hours. Without --promote the replay works on a copy of the store in --out
and never writes --root. Running the same command again with the same --out resumes a
replay that was stopped. KEY=VALUE are further config overrides (e.g.
mechanic.every_hours=12 replay.expire_hours=null). The outputs are those of
``pipeline=replay`` (trades.csv, equity.csv, coins.csv, mechanic.json, equity.png,
replay.json), in --out. Bad input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from huracan.errors import HuracanError
from huracan.pipelines.replay.report import format_summary

CONF = Path(__file__).resolve().parent / "conf"


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides the arguments stand for."""
    out = [
        "pipeline=replay",
        f"store.root={Path(args.root).expanduser().absolute()}",
        f"+output_dir={Path(args.out).expanduser().absolute()}",
        f"replay.mechanic={str(not args.no_mechanic).lower()}",
        f"replay.promote={str(args.promote).lower()}",
    ]
    if args.data:
        out += ["data=csv", f"data.path={Path(args.data).expanduser().absolute()}"]
    out += [f"replay.{key}={value}" for key in ("start", "end") if (value := getattr(args, key))]
    return [*out, *args.overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m huracan.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", default="artifacts", help="the per-coin run's artifact root")
    parser.add_argument("--data", default=None, help="directory of per-symbol bar files")
    parser.add_argument("--start", default=None, help="first bar replayed")
    parser.add_argument("--end", default=None, help="replay the bars before this time")
    parser.add_argument("--out", default="replay", help="the run directory (resumes there)")
    parser.add_argument("--no-mechanic", action="store_true", help="signals and positions only")
    parser.add_argument(
        "--promote", action="store_true", help="the Mechanic promotes into --root itself"
    )
    parser.add_argument("overrides", nargs="*", help="further config overrides KEY=VALUE")
    args = parser.parse_args(argv)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from huracan.run import train  # torch and the pipelines only once the arguments parse

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("huracan").setLevel(logging.INFO)  # each bar's line, with its wall time
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=overrides_of(args))
        summary, _ = train(cfg)
    except (HuracanError, HydraException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = summary["replay"]
    print(format_summary(report))
    print(
        f"\n{report['bars']} bars {report['window'][0]}..{report['window'][1]}, "
        f"{len(report['coins'])} coins, {report['mechanic_cycles']} Mechanic cycle(s), "
        f"{report['promotions']} promotion(s); a bar took {report['bar_seconds']['mean']:.3f} s "
        f"on average ({report['bar_seconds']['max']:.3f} s at most); outputs in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
