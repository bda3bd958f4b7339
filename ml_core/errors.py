"""One exception family. Every message names the offending value and the fix."""

from __future__ import annotations


class CoincastError(Exception):
    """Base class of every error coincast raises on purpose."""


class ConfigError(CoincastError):
    """A configuration value is missing, malformed or inconsistent."""


class DataContractError(CoincastError):
    """Input data does not meet the candle contract (columns, types, values)."""


class NotCandlesError(DataContractError):
    """The file holds no candles (funding rates, trades, a README): skip it, read the rest.

    The message is one line naming the file and why, e.g. "...: funding-rate file, not
    candles: skipped".
    """


class QualityGateError(DataContractError):
    """A batch failed a critical expectation and was quarantined.

    ``batch_id`` names the quarantine record; ``failures`` lists the failed
    expectations with symbol and example rows.
    """

    def __init__(self, message: str, *, batch_id: str, failures: list[dict]) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.failures = failures


class RevisionError(QualityGateError):
    """A batch would change candles already stored; it was refused and quarantined.

    ``revisions`` lists, per symbol, the bars that differ and the largest relative
    change. Exchanges do correct bars: ``allow_revisions`` (CLI ``--allow-revisions``)
    applies them.
    """

    def __init__(
        self, message: str, *, batch_id: str, failures: list[dict], revisions: list[dict]
    ) -> None:
        super().__init__(message, batch_id=batch_id, failures=failures)
        self.revisions = revisions


class NotFittedError(CoincastError):
    """A model, scaler or pipeline was used before ``fit``."""


class RegistryError(CoincastError):
    """The model registry is missing a model/alias or refused an operation."""


class WarehouseError(CoincastError):
    """The DuckDB warehouse could not be opened or is locked for too long."""
