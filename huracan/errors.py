"""Errors a user can cause, each naming the file, symbol, row or value at fault."""


class HuracanError(Exception):
    """Base class of every error Huracan raises for bad input or bad configuration."""


class DataError(HuracanError, ValueError):
    """Bad market data: names the file (or symbol) and, where it applies, the row."""

    def __init__(self, source: str, message: str, row: int | None = None):
        self.source = source
        self.row = row
        self.message = message
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {message}")


class ConfigError(HuracanError, ValueError):
    """A configuration value that cannot work, with the key and the value."""


class LockLost(HuracanError):
    """This run's lock on its artifact root was taken over: the run stops without writing
    again (``train.py`` exits 3)."""


INTERRUPTS: list[str] = []  # the signals received (huracan.cli records them, huracan.report reads)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM during a run (``huracan.cli`` raises it from the signal handler).

    A BaseException that is not a KeyboardInterrupt: ``except Exception`` blocks let it
    through, and Lightning re-raises it after its teardown instead of calling ``exit(1)``
    as it does for a KeyboardInterrupt.
    """
