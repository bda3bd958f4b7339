"""Typed flow parameters: validated at the edge, shown as forms in the Prefect UI."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ml_core.config import CoincastConfig, load_config
from ml_core.data.datasets import resolve_timeframe


class RunParams(BaseModel):
    """Where the state lives and which data set to use; everything else comes from config."""

    home: str | None = Field(default=None, description="COINCAST_HOME override (state folder).")
    config_path: str | None = Field(default=None, description="Optional JSON/YAML config file.")
    timeframe: str | None = Field(default=None, description="Data set timeframe, e.g. 1m, 1h, 1d.")
    profile: str | None = Field(
        default=None, description="Settings profile: 'default' or 'full' (the whole model zoo)."
    )
    exclude_symbols: list[str] = Field(
        default_factory=list,
        description="Symbols to leave out of this run (the retrain fills it in with those "
        "whose stored candles fail the candle suite).",
    )

    def shared(self) -> RunParams:
        """The run fields alone (home, config file, timeframe, profile, excluded symbols):
        what a flow hands the flows it starts, so none of them falls back to a default."""
        return RunParams(**self.model_dump(include=set(RunParams.model_fields)))

    def load(self) -> CoincastConfig:
        """The one config object for this run; without a timeframe, the warehouse's only one
        (``ml_core.data.datasets.resolve_timeframe``)."""
        overrides: dict[str, object] = {}
        if self.home:
            overrides["home"] = self.home
        if self.profile:
            overrides["profile"] = self.profile
        data: dict[str, object] = {}
        if self.timeframe:
            data["timeframe"] = self.timeframe
        if self.exclude_symbols:
            data["exclude_symbols"] = self.exclude_symbols
        if data:
            overrides["data"] = data
        return resolve_timeframe(load_config(self.config_path, **overrides), self._incoming())

    def _incoming(self) -> list[str]:
        """Files this run ingests before it reads the warehouse (none here)."""
        return []


class IngestParams(RunParams):
    paths: list[str] = Field(
        default_factory=list,
        description="Candle files or folders on this machine (none: only the configured "
        "download sources).",
    )
    download: bool = Field(
        default=True,
        description="Also download new candles from the configured sources of this timeframe.",
    )
    symbol: str | None = Field(
        default=None, description="Symbol, when the files have no symbol column."
    )
    source_timeframe: str | None = Field(
        default=None, description="Timeframe of the files; inferred from the spacing when empty."
    )
    allow_revisions: bool = Field(
        default=False,
        description="Apply changes to candles already stored (an exchange corrected bars); "
        "otherwise such a batch is refused and quarantined.",
    )


class RetrainParams(RunParams):
    ingest_paths: list[str] = Field(
        default_factory=list,
        description="Files to ingest before retraining (none: use the warehouse).",
    )
    download: bool = Field(
        default=True,
        description="First download new candles from the configured sources (if any).",
    )

    def _incoming(self) -> list[str]:
        return self.ingest_paths

    def run_params(self, cfg: CoincastConfig | None = None) -> RunParams:
        """The shared part (home, config file, timeframe, profile) for the sub-flows; with
        ``cfg`` (this run's loaded config) the timeframe it resolved, so every step works on
        the same data set even when the files to ingest decided it."""
        run = self.shared()
        if cfg is not None and run.timeframe is None:
            run = run.model_copy(update={"timeframe": cfg.data.timeframe})
        return run


class PredictParams(RunParams):
    download: bool = Field(
        default=True,
        description="First download new candles from the configured sources (if any).",
    )
    symbols: list[str] | None = Field(
        default=None, description="Only these symbols (none: every symbol of the timeframe)."
    )


class MonitorParams(RunParams):
    allow_rollback: bool = Field(
        default=True,
        description="Apply the rollback rule (false: report metrics and the decision only).",
    )
