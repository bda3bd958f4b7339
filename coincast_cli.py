"""The `coincast` command line: the edge where configuration is loaded once.

Reads go straight to ml_core; the retrain runs as a Prefect flow (no server
needed: Prefect starts a temporary one). Every CoincastError becomes a clear
message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ml_core.config import CoincastConfig, load_config, redact_text, redact_uri
from ml_core.errors import CoincastError, ConfigError, QualityGateError, RevisionError

if TYPE_CHECKING:
    from ml_core.data.ingest import IngestRun

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="coincast: honest crypto direction models, from candles to a promoted champion.",
)
config_app = typer.Typer(no_args_is_help=True, help="The effective settings.")
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        import ml_core

        typer.echo(f"coincast {ml_core.__version__}")
        raise typer.Exit()


#: ``coincast -v``: Prefect's and MLflow's log lines on the console instead of step lines.
_VERBOSE = {"on": False}


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show Prefect's and MLflow's log lines while a flow runs (default: one line "
            "per finished step; the whole log is in <home>/logs/coincast.log either way).",
        ),
    ] = False,
) -> None:
    """coincast: honest crypto direction models, from candles to a promoted champion."""
    _VERBOSE["on"] = verbose


# markup off: symbols, paths and reasons come from user data and are printed as written
# ('[/]EVIL' is a symbol, not a tag); coincast's own styling uses Text objects (_styled).
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def _styled(label: str, style: str, rest: object = "") -> Text:
    """``label`` in ``style``, then ``rest`` exactly as written (no markup)."""
    return Text.assemble((label, style), str(rest))


HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="State folder (default $COINCAST_HOME or ./.coincast)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="JSON or YAML config file.")]
TimeframeOpt = Annotated[
    str | None, typer.Option("--timeframe", "-t", help="Data set timeframe: 1m, 5m, 1h, 1d, ...")
]


def _config(
    home: Path | None,
    config: Path | None,
    timeframe: str | None = None,
    *,
    profile: str | None = None,
    dataset: bool = True,
    files: list[Path] | None = None,
    flows: bool = False,
) -> CoincastConfig:
    """The one config of this command; ``dataset``: fill in the timeframe from the warehouse
    (and the ``files`` the command ingests first) when it was not given
    (``ml_core.data.datasets.resolve_timeframe``)."""
    cfg = load_config(config, **_overrides(home, timeframe, profile))
    if dataset:
        from ml_core.data.datasets import resolve_timeframe

        cfg = resolve_timeframe(cfg, files or ())
    _prefect_env(cfg)
    if flows:  # Prefect makes PREFECT_HOME when imported: a fresh home warned it could not
        (cfg.home.resolve() / "prefect").mkdir(parents=True, exist_ok=True)
    return cfg


def _overrides(home: Path | None, timeframe: str | None, profile: str | None) -> dict:
    """The command-line layer of the config (``load_config`` / ``config_sources``)."""
    overrides: dict[str, object] = {"profile": profile}
    if home is not None:
        overrides["home"] = home
    if timeframe is not None:
        overrides["data"] = {"timeframe": timeframe}
    return overrides


def _run_fields(cfg: CoincastConfig, config: Path | None) -> dict[str, str | None]:
    """The ``RunParams`` fields of a flow started from the CLI (home, file, timeframe, profile)."""
    return {
        "home": str(cfg.home),
        "config_path": str(config) if config else None,
        "timeframe": cfg.data.timeframe,
        "profile": cfg.profile,
    }


def _prefect_env(cfg: CoincastConfig) -> None:
    """Sensible Prefect defaults for a laptop; explicit settings always win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_HOME", str(cfg.home.resolve() / "prefect"))
    if "PREFECT_API_URL" not in os.environ:
        from deployments.servers import running_ui_api

        if (api := running_ui_api(cfg.home)) is not None:  # no temporary server: its UI shows
            os.environ["PREFECT_API_URL"] = api
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # a verified model load copies its ~100 files: no per-file progress bar on the console
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _fail(exc: Exception) -> None:
    err_console.print(_styled("error:", "bold red", f" {redact_text(str(exc))}"))
    raise typer.Exit(code=2 if isinstance(exc, QualityGateError) else 1)


class _OneLineTracebacks(logging.Filter):
    """On the console, an error logged with a traceback keeps its first line; the
    traceback goes to the log file only (``_flow_logging``)."""

    def __init__(self, log_file: Path) -> None:
        super().__init__()
        self.log_file = log_file

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            first = redact_text(record.getMessage().splitlines()[0])
            record.msg, record.args = f"{first} (traceback in {self.log_file})", ()
            record.exc_info = record.exc_text = None
        return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In a child before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _temporary_server_dies_with_us() -> None:
    """Prefect's temporary server (started when no PREFECT_API_URL is set) is a child
    process that outlives a killed command (``kill -9``: ~200 MB left running). On Linux,
    start it with a parent-death signal so it ends with the command whatever kills it."""
    if not sys.platform.startswith("linux"):
        return
    import subprocess

    from prefect.server.api import server as prefect_server

    cls = prefect_server.SubprocessASGIServer
    if getattr(cls, "_coincast_tied", False):
        return
    start = cls._run_uvicorn_command

    def run_tied(self: object) -> subprocess.Popen:
        popen = subprocess.Popen
        subprocess.Popen = partial(popen, preexec_fn=_die_with_parent)  # type: ignore[misc]
        try:
            return start(self)
        finally:
            subprocess.Popen = popen  # type: ignore[misc]

    cls._run_uvicorn_command = run_tied
    cls._coincast_tied = True


@contextmanager
def _flow_logging(cfg: CoincastConfig) -> Iterator[Path]:
    """Run a flow with the whole log (tracebacks included) in <home>/logs/coincast.log and
    only one line per failure on the console."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    _temporary_server_dies_with_us()
    log_file = cfg.home.resolve() / "logs" / "coincast.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers.insert(0, file_handler)  # first: it sees the record before the filter
    short = _OneLineTracebacks(log_file)
    consoles = [h for h in root.handlers if h is not file_handler]
    for h in consoles:
        h.addFilter(short)
    from deployments.progress import quiet_progress

    try:
        with quiet_progress(err_console, verbose=_VERBOSE["on"]):
            _sweep_orphans(cfg)
            yield log_file
    finally:
        for h in consoles:
            h.removeFilter(short)
        root.removeHandler(file_handler)
        file_handler.close()


def _sweep_orphans(cfg: CoincastConfig) -> None:
    """Before a flow: runs a killed coincast process left Running are marked Crashed
    (Prefect) / KILLED (MLflow), with a warning; best effort (a failure is logged only)."""
    from flows.orphans import sweep

    try:
        ended = sweep(cfg)
    except Exception as exc:  # noqa: BLE001 - never stop a command for the cleanup
        logging.getLogger(__name__).warning("could not check for runs left Running: %s", exc)
        return
    if ended["flow_runs"] or ended["mlflow_runs"]:
        err_console.print(
            _styled(
                "cleaned up",
                "yellow",
                f" a killed coincast process had left {len(ended['flow_runs'])} Prefect flow "
                f"run(s) Running (now marked Crashed) and {len(ended['mlflow_runs'])} MLflow "
                "run(s) RUNNING (now KILLED).",
            )
        )


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a CoincastError into its message and a non-zero exit (2: quarantined batch); an
    OS error (an unwritable or missing folder, a full disk) into one line naming the path."""
    try:
        yield
    except CoincastError as exc:
        _fail(exc)
    except OSError as exc:
        if (translated := _registry_error(exc)) is not None:
            _fail(translated)
        where = f": {exc.filename}" if exc.filename else ""
        _fail(
            ConfigError(
                f"{exc.strerror or exc}{where}. Check that the path exists and that the "
                "coincast home (--home or COINCAST_HOME) is a folder you can write to."
            )
        )
    except Exception as exc:  # noqa: BLE001 - a registry fault a user can fix: one line
        if (translated := _registry_error(exc)) is None:
            raise
        _fail(translated)


def _registry_error(exc: BaseException) -> CoincastError | None:
    from ml_core.registry.tracking import user_error

    return user_error(exc)


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Candle files or folders: CSV, Parquet, Feather, JSON(.gz), data.binance.vision "
            "zip (docs/formats.md)."
        ),
    ],
    symbol: Annotated[
        str | None, typer.Option(help="Symbol when files have no symbol column.")
    ] = None,
    timeframe: TimeframeOpt = None,
    allow_revisions: Annotated[
        bool,
        typer.Option(
            "--allow-revisions",
            help="Apply changes to candles already stored (an exchange corrected bars); "
            "without it such a batch is refused and quarantined.",
        ),
    ] = False,
    market: Annotated[
        str | None,
        typer.Option(help="spot or futures, when file names and folders do not say."),
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Load candle files into the warehouse behind the quality gate (idempotent).

    Ends with one line per file: rows read, new, revised, unchanged, still-forming
    bars skipped; skipped files with the reason; on a failure, what loaded and what not.
    """
    from ml_core.data.ingest import ingest_run
    from ml_core.data.warehouse import Warehouse

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        run = ingest_run(
            Warehouse(cfg.warehouse_path),
            list(paths),
            cfg.quality,
            symbol=symbol,
            timeframe=timeframe,
            allow_revisions=allow_revisions,
            market=market,
        )
        if as_json:
            _write_json(_ingest_json(run, cfg))
        else:
            _print_ingest(run, cfg)
        run.raise_for_failure()


@app.command()
def download(
    symbols: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated ccxt symbols, e.g. BTC/USDT,ETH/USDT (BTC/USDT:USDT: the "
            "perpetual). Without it: the `sources:` of the config."
        ),
    ] = None,
    exchange: Annotated[str, typer.Option(help="A ccxt exchange id.")] = "binance",
    timeframe: TimeframeOpt = None,
    since: Annotated[
        str | None,
        typer.Option(help="Where a first download starts (ISO date); later runs resume."),
    ] = None,
    market: Annotated[str, typer.Option(help="spot or futures (perpetual swaps).")] = "spot",
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Download new candles from an exchange into the warehouse, behind the quality gate.

    Resumes after the last stored bar of each symbol; the still-forming bar is not
    stored; a bad batch is quarantined and its symbol stops (exit code 2). See
    docs/download.md.
    """
    from ml_core.config import SourceConfig
    from ml_core.data.exchange import download_sources
    from ml_core.data.warehouse import Warehouse

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        if symbols:
            fields = {"exchange": exchange, "symbols": symbols, "market": market, "since": since}
            sources = [SourceConfig(**fields, timeframe=timeframe or "1h")]
        else:
            sources = [s for s in cfg.sources if timeframe in (None, s.timeframe)]
            if not sources:
                raise ConfigError(
                    "Nothing to download: pass --symbols (e.g. --symbols BTC/USDT,ETH/USDT "
                    "-t 1h) or configure `sources:` in the config file (docs/download.md)."
                )
        with _download_progress() as progress:
            results = download_sources(
                Warehouse(cfg.warehouse_path), sources, cfg.quality, progress=progress
            )
    _print_downloads([r.as_dict() for r in results], cfg)


@contextmanager
def _download_progress() -> Iterator[Callable[[str, int, object], None]]:
    """A rich progress line per symbol: bars stored and the newest bar's time."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TextColumn("{task.fields[bars]:>9,} bars"),
        TextColumn("up to {task.fields[last]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        tasks: dict[str, object] = {}

        def update(symbol: str, n_bars: int, last_ts: object) -> None:
            if symbol not in tasks:
                tasks[symbol] = bar.add_task(symbol, total=None, bars=0, last="-")
            bar.update(tasks[symbol], bars=n_bars, last=str(last_ts)[:16])

        yield update


def _print_downloads(results: list[dict], cfg: CoincastConfig) -> None:
    """One table per source: what each symbol's download stored; exit code 2 on quarantine."""
    quarantined = []
    for r in results:
        table = Table(
            title=f"{r['exchange']} {r['market']} {r['timeframe']} -> {cfg.warehouse_path}",
            caption="forming: the bar still open, not stored; the next run brings it closed",
        )
        table.add_column("symbol", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for col in ["new", "forming", "retries"]:
            table.add_column(col, justify="right")
        table.add_column("newest bar stored", no_wrap=True)
        for sym in r["symbols"]:
            status = sym["status"]
            if status == "quarantined":
                quarantined.append(sym)
                status = Text("quarantined", style="red")
            newest = sym["last_ts"]
            table.add_row(
                sym["symbol"],
                status,
                f"{sym['n_new']:,}",
                str(sym["n_forming"]),
                str(sym["n_retries"]),
                newest[:16].replace("T", " ") if newest else "no new bar",
            )
        console.print(table)
    for sym in quarantined:
        err_console.print(
            _styled("quarantined", "bold red", f" {sym['symbol']}: {sym['quarantine_reason']}")
        )
    if quarantined:
        raise typer.Exit(code=2)


def _ingest_json(run: IngestRun, cfg: CoincastConfig) -> dict:
    """An ``IngestRun`` as plain data: what ``_print_ingest`` shows, nothing cut."""
    failed = None
    if run.failed is not None:
        path, exc = run.failed
        kind = (
            "refused"
            if isinstance(exc, RevisionError)
            else "quarantined"
            if isinstance(exc, QualityGateError)
            else "failed"
        )
        failed = {"path": path, "status": kind, "error": redact_text(str(exc))}
    return {
        "warehouse": str(cfg.warehouse_path),
        "loaded": [r.as_dict() for r in run.results],
        "skipped": [{"path": p, "reason": why} for p, why in run.skipped],
        "failed": failed,
        "not_read": run.not_read,
    }


def _print_ingest(run: IngestRun, cfg: CoincastConfig) -> None:
    """The per-file summary of an ``IngestRun``."""
    table = Table(title=f"Ingest into {cfg.warehouse_path}")
    table.caption = (
        "same: stored already; forming: not closed yet, not stored; "
        "`coincast batches` lists the batch ids"
    )
    table.add_column("file", overflow="fold")
    for col in ["status", "tf", "rows", "new", "revised", "same", "forming", "soft"]:
        table.add_column(col, justify="left" if col == "status" else "right")
    for r in run.results:
        table.add_row(
            Path(r.source).name,
            Text("loaded", style="green"),
            r.timeframe,
            f"{r.n_rows:,}",
            f"{r.n_new:,}",
            f"{r.n_updated:,}",
            f"{r.n_unchanged:,}",
            f"{r.n_forming:,}",
            str(len(r.findings)),
        )

    if run.failed is not None:
        exc = run.failed[1]
        status = Text(
            "refused"
            if isinstance(exc, RevisionError)
            else "quarantined"
            if isinstance(exc, QualityGateError)
            else "failed",
            style="red",
        )
        table.add_row(Path(run.failed[0]).name, status, *[""] * 7)
    for path in run.not_read:
        table.add_row(Path(path).name, "not read", *[""] * 7)
    console.print(table)
    for path, reason in run.skipped:
        short = reason.removeprefix(f"{path}: ").split(" (")[0].split(": skipped")[0]
        console.print(_styled("skipped", "yellow", f" {path}: {short}"), highlight=False)
    _print_findings([f for r in run.results for f in r.findings])


def _print_findings(findings: list[dict]) -> None:
    if not findings:
        return
    table = Table(title="Soft quality findings (recorded, not fatal)")
    for col in ["symbol", "timeframe", "check", "n", "detail"]:
        table.add_column(col)
    for f in findings[:40]:
        table.add_row(
            str(f.get("symbol")),
            str(f.get("timeframe")),
            str(f.get("check")),
            str(f.get("n")),
            str(f.get("detail"))[:80],
        )
    console.print(table)
    if len(findings) > 40:
        console.print(f"... and {len(findings) - 40} more (table quality_findings).")


@app.command()
def batches(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 20,
) -> None:
    """The ingested batches (one per file or download), newest first, with their ids
    for `coincast remove-batch`."""
    from ml_core.data.batches import list_batches
    from ml_core.data.warehouse import Warehouse

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        frame = list_batches(Warehouse(cfg.warehouse_path), limit=limit)
    table = Table(title=f"Batches in {cfg.warehouse_path}")
    table.caption = "batch: the start of its id, enough for `coincast remove-batch`"
    table.add_column("batch", no_wrap=True)
    table.add_column("loaded (UTC)", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("symbols", overflow="fold")
    for col in ["tf", "rows", "new", "revised"]:
        table.add_column(col, justify="left" if col == "tf" else "right")
    table.add_column("status")
    styles = {"loaded": "green", "quarantined": "red", "removed": "yellow"}
    for r in frame.itertuples():
        table.add_row(
            r.batch_id[:8],
            str(r.created_at)[:19],
            Path(str(r.source)).name,
            str(r.symbols),
            str(r.timeframe),
            f"{r.n_rows:,}",
            f"{r.n_new:,}",
            f"{r.n_updated:,}",
            Text(str(r.status), style=styles.get(str(r.status), "")),
        )
    console.print(table)


@app.command("remove-batch")
def remove_batch(
    batch_id: Annotated[
        str, typer.Argument(help="The batch id (or its first 8+ characters): `coincast batches`.")
    ],
    reason: Annotated[str, typer.Option(help="Why, for the audit (batch_removals).")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Take an ingested batch out of the warehouse: the candles it added are deleted, the
    ones it revised get their earlier values back. Audited; the features rebuild."""
    from ml_core.data import batches
    from ml_core.data.warehouse import Warehouse

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        wh = Warehouse(cfg.warehouse_path)
        plan = batches.plan_removal(wh, batch_id)
        console.print(
            f"Batch {plan.batch_id} ({Path(plan.source).name}, {', '.join(plan.symbols)} "
            f"{plan.timeframe}): removing it deletes {plan.n_deleted:,} candle(s) and sets "
            f"{plan.n_restored:,} back to their earlier values."
        )
        if plan.n_kept:
            console.print(
                f"{plan.n_kept:,} candle(s) it wrote were revised by a later batch since: they "
                "keep the later values (remove that batch too to take them out)."
            )
        if not yes and not typer.confirm("Remove it?", default=False):
            console.print("Nothing changed.")
            raise typer.Exit(code=1)
        done = batches.remove_batch(wh, plan.batch_id, reason=reason)
    console.print(
        _styled(
            "removed",
            "yellow",
            f" batch {done.batch_id}: {done.n_deleted:,} deleted, {done.n_restored:,} restored "
            f"(audited in batch_removals by {done.actor}). Predictions already made from these "
            "candles stay; the next retrain and score use the warehouse as it is now.",
        )
    )


@app.command()
def validate(
    home: HomeOpt = None, config: ConfigOpt = None, timeframe: TimeframeOpt = None
) -> None:
    """Re-check the stored candles of a timeframe with the Great Expectations suite."""
    from ml_core.data.warehouse import Warehouse
    from ml_core.quality.suite import validate_candles

    with _user_errors():
        cfg = _config(home, config, timeframe)
        candles = Warehouse(cfg.warehouse_path).read_candles(timeframe=cfg.data.timeframe)
        report = validate_candles(candles, cfg.quality)
    console.print(report.summary())
    _print_findings(report.findings)
    if not report.passed:
        raise typer.Exit(code=2)


@app.command()
def features(
    symbol: Annotated[str, typer.Option(help="Symbol to export, e.g. 'BTC/USDT:USDT'.")],
    out: Annotated[Path, typer.Option(help="Output Parquet file.")],
    timeframe: TimeframeOpt = None,
    labels: Annotated[bool, typer.Option(help="Include the labels (up_h, ret_h, t1_h).")] = True,
    home: HomeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export the feature (and label) frame of one symbol for inspection."""
    from ml_core.data.warehouse import Warehouse
    from ml_core.features import build_model_frame, compute_features

    with _user_errors():
        cfg = _config(home, config, timeframe)
        with Warehouse(cfg.warehouse_path).connect(read_only=True) as con:
            if labels:
                frame = build_model_frame(
                    con,
                    timeframe=cfg.data.timeframe,
                    horizons=cfg.horizons,
                    cfg=cfg.features,
                    symbols=[symbol],
                )
            else:
                frame = compute_features(
                    con, timeframe=cfg.data.timeframe, cfg=cfg.features, symbols=[symbol]
                )
    if frame.empty:
        _fail(
            CoincastError(
                f"No candles for symbol {symbol!r} at timeframe {cfg.data.timeframe!r}; "
                "check `coincast status` for what the warehouse holds."
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    console.print(f"Wrote {len(frame):,} rows x {frame.shape[1]} columns to {out}")


@app.command()
def retrain(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
    ingest_path: Annotated[
        list[Path] | None, typer.Option("--ingest", help="Files to ingest first.")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Settings profile: default, or full (the whole zoo)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run the weekly retrain flow: validate, features, train, promote, report."""
    with _user_errors():
        cfg = _config(home, config, timeframe, profile=profile, files=ingest_path, flows=True)
        from flows.params import RetrainParams
        from flows.retrain import retrain_flow
        from ml_core.data.datasets import require_candles

        if not ingest_path:
            require_candles(cfg)  # before Prefect starts: a clear line, not a 30 s failure
        params = RetrainParams(
            **_run_fields(cfg, config),
            ingest_paths=[str(p) for p in ingest_path or []],
        )
        with _flow_logging(cfg):
            summary = retrain_flow(params)
    if as_json:
        _write_json(summary)
    else:
        _print_retrain(summary)


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="Candle file (CSV/Parquet) or a warehouse.duckdb.")],
    start: Annotated[str, typer.Option(help="First clock time, UTC (e.g. 2024-06-03).")],
    end: Annotated[str | None, typer.Option(help="Last clock time (default: data end).")] = None,
    weeks: Annotated[
        int | None, typer.Option(min=1, help="Weekly cycles to replay (instead of --end).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("replay"),
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="coincast, latest, frozen (repeatable; default all)."),
    ] = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Only these symbols (repeatable).")
    ] = None,
    retrain_cron: Annotated[str | None, typer.Option(help="Weekly retrain cron.")] = None,
    predict_cron: Annotated[str | None, typer.Option(help="Daily predict cron.")] = None,
    monitor_cron: Annotated[str | None, typer.Option(help="Daily monitor cron.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Timezone of the crons (default deployments.timezone).")
    ] = None,
    warmup_days: Annotated[
        float, typer.Option(min=0, help="History days after start before retrain 1.")
    ] = 0.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in the output folder's homes.")
    ] = False,
    timeframe: TimeframeOpt = None,
    config: ConfigOpt = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Settings profile: default or full.")
    ] = None,
) -> None:
    """Replay the weekly loop over history on the deployments' clock, one home per policy."""
    from ml_core.replay.homes import POLICIES, check_policies

    with _user_errors():
        policies = check_policies(policy or list(POLICIES))  # fail before starting Prefect
        (out / "prefect").mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str(out.resolve() / "prefect"))
        cfg = _config(None, config, profile=profile, dataset=False)
        from flows.replay import ReplayParams, replay_flow

        with _flow_logging(cfg):
            summary = replay_flow(
                ReplayParams(
                    data=str(data),
                    start=start,
                    end=end,
                    weeks=weeks,
                    out_dir=str(out),
                    timeframe=timeframe,
                    symbols=symbol or None,
                    policies=policies,
                    config_path=str(config) if config else None,
                    profile=cfg.profile,
                    weekly_retrain_cron=retrain_cron,
                    daily_predict_cron=predict_cron,
                    daily_monitor_cron=monitor_cron,
                    timezone=timezone,
                    warmup_days=warmup_days,
                    overwrite=overwrite,
                )
            )
    _print_replay(summary)


def _print_replay(summary: dict) -> None:
    title = f"Replay {summary['start']} .. {summary['end']} ({summary['n_steps']} clock steps)"
    table = Table(title=title)
    columns = ["policy", "weeks", "AUC", "log loss", "conf. hit", "return", "worse", "champions"]
    for col in columns:
        table.add_column(col)
    for p in summary["policies"]:
        ret = p["total_trading_return"]
        table.add_row(
            p["policy"],
            str(p["weeks_scored"]),
            *(_short(p[k]) for k in ("auc", "log_loss", "hit_rate_confident")),
            "-" if ret != ret else f"{ret * 100:+.2f}%",
            p["weeks_worse_than_baseline"],
            p["champions"],
        )
    console.print(table)
    console.print(f"  report: {summary['paths']['html']}")
    console.print(f"  weekly CSV: {summary['paths']['csv']}")
    console.print(
        f"  MLflow run {summary['mlflow_run_id']} at {redact_uri(summary['tracking_uri'])}"
    )


def _print_retrain(summary: dict) -> None:
    d = summary["decision"]
    verdict = ("PROMOTED", "bold green") if d["promote"] else ("NOT PROMOTED", "bold yellow")
    kind = d.get("kind") or summary.get("kind") or ""
    which = f" v{d['challenger_version']}" if d.get("challenger_version") else ""
    console.print(
        Text.assemble(
            f"\nDecision for {summary['model_name']}{which}: ",
            verdict,
            f" ({kind})" if kind else "",
        )
    )
    console.print(f"  why: {d['reason']}")
    from ml_core.evaluation.weekly import after_fee_text

    if (line := after_fee_text(d.get("metrics") or {})) is not None:
        console.print(f"  {line}")
    for sym, why in (d.get("left_out") or {}).items():
        console.print(_styled("  left out:", "yellow", f" {sym} (its stored candles fail: {why})"))
    champ = summary["champion_version"]
    console.print(
        f"  champion now: v{champ}"
        if champ
        else "  champion now: none (no version has passed the gate yet)"
    )
    console.print(f"  report: {summary['report_path']}")
    console.print(
        "  MLflow UI:  mlflow ui --host 127.0.0.1 --backend-store-uri "
        f"{redact_uri(summary['tracking_uri'])}"
        "  (then open http://127.0.0.1:5000)"
    )
    console.print(
        f"  Prefect UI: PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')} "
        "prefect server start --host 127.0.0.1  (then open http://127.0.0.1:4200)"
    )


@app.command()
def tune(
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate", "-c", help="Model to tune (repeatable; default tuning.models)."
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", "-n", min=1, help="New trials per study.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Seconds per study.")
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Run the tune flow: Optuna studies on purged validation; the next retrain uses the best."""
    with _user_errors():
        cfg = _config(home, config, timeframe, flows=True)
        from flows.tune import TuneParams, tune_flow
        from ml_core.models.tuning import check_tunable

        check_tunable(candidate or cfg.tuning.models)  # fail before starting Prefect
        with _flow_logging(cfg):
            summary = tune_flow(
                TuneParams(
                    **_run_fields(cfg, config),
                    candidates=candidate or None,
                    n_trials=trials,
                    timeout_s=timeout,
                )
            )
    table = Table(title=f"Tuned {summary['model_name']} (mean validation AUC over horizons)")
    for col in ["study", "best val AUC", "new trials", "trials total", "best params"]:
        table.add_column(col)
    for s in summary["studies"]:
        best = "-" if s["best_value"] is None else f"{s['best_value']:.4f}"
        params = ", ".join(f"{k}={_short(v)}" for k, v in (s["best_params"] or {}).items())
        table.add_row(
            s["study_name"], best, str(s["n_trials_new"]), str(s["n_trials_total"]), params
        )
    console.print(table)
    console.print(
        f"  saved to {summary['tuned_params_path']} (used by the next `coincast retrain`)"
    )
    console.print(
        f"  MLflow run {summary['mlflow_run_id']} at {redact_uri(summary['tracking_uri'])}"
    )


def _warn_stale(preds: object, timeframe: str) -> None:
    """Warn (stderr) when a symbol's latest candle closed more than two bars ago."""
    from ml_core.serving import stale_symbols

    stale = stale_symbols(preds, timeframe)
    if stale:
        listing = ", ".join(f"{sym} ({age})" for sym, age in list(stale.items())[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        err_console.print(
            _styled(
                "warning:",
                "yellow",
                f" the latest {timeframe} candle is more than two bars old for "
                f"{listing}{more}: these are scores of old data. Bring new candles with "
                "`coincast download` (or `coincast ingest`).",
            )
        )


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def predict(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """P(up) per horizon for the latest candle of each symbol, from the champion."""
    import pandas as pd

    with _user_errors():
        cfg = _config(home, config, timeframe)
        preds, via = _latest_predictions(cfg, symbol=symbol, alias=alias)
    _warn_stale(preds, cfg.data.timeframe)
    if "edge" not in preds.columns:  # a model registered before per-horizon skill existed
        preds["edge"] = True
    no_edge = ~preds["edge"].astype(bool)
    if as_json:  # a horizon without shown skill is served as "no edge", not as a number
        served = preds.assign(
            p_up=preds["p_up"].where(~no_edge), exp_ret=preds["exp_ret"].where(~no_edge)
        )
        if "p_set" in served.columns:
            served["p_set"] = served["p_set"].where(~no_edge, None)
        sys.stdout.write(served.to_json(orient="records", date_format="iso") + "\n")
        return
    wide = preds.assign(p_up=preds["p_up"].where(~no_edge, -1.0)).pivot_table(
        index=["symbol", "ts"], columns="horizon", values="p_up"
    )
    wide = wide.reset_index()
    table = Table(
        title=f"P(up) from {cfg.model_name}@{alias} v{preds['model_version'].iloc[0]} "
        f"(bars ahead, {cfg.data.timeframe}){via}"
    )
    table.add_column("symbol")
    table.add_column("latest candle (UTC)")
    horizons = [c for c in wide.columns if c not in ("symbol", "ts")]
    for h in horizons:
        table.add_column(f"h={h}", justify="right")
    sets = (
        {(r.symbol, int(r.horizon)): r.p_set for r in preds.itertuples() if r.edge}
        if "p_set" in preds.columns
        else {}
    )
    arrows = {"up": " ↑", "down": " ↓"}
    for _, row in wide.iterrows():
        ts = pd.Timestamp(row["ts"]).strftime("%Y-%m-%d %H:%M")
        cells = [
            _p_text(row[h]) + arrows.get(sets.get((row["symbol"], int(h))), "") for h in horizons
        ]
        table.add_row(row["symbol"], ts, *cells)
    console.print(table)
    if any(v in arrows for v in sets.values()):
        level = cfg.models.conformal_confidence or 0.9
        console.print(
            f"↑ / ↓: the {level:.0%} conformal set holds only that direction; no arrow: both "
            "directions (abstain)."
        )
    if no_edge.any():
        console.print(
            "no edge: the champion showed no skill over the naive baselines at that horizon "
            "(see `coincast status` and the report), so it serves no number there."
        )


@app.command("serve-model")
def serve_model(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    alias: Annotated[str, typer.Option(help="Registry alias to serve.")] = "champion",
    poll_seconds: Annotated[
        float, typer.Option(help="How often to check the alias for a new version.")
    ] = 5.0,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """A warm scoring service: the champion loaded once, P(up) over HTTP in milliseconds.

    Swaps to the new version after a promotion or rollback without a restart. While it
    runs, `coincast predict` on the same home answers through it.
    """
    from ml_core.service import ScoringService
    from ml_core.service_app import serve

    if poll_seconds <= 0:
        _fail(ConfigError(f"--poll-seconds must be > 0, got {poll_seconds}."))
    with _user_errors():
        cfg = _config(home, config, timeframe)
        serve(
            ScoringService(cfg, alias=alias, poll_s=poll_seconds),
            host=host,
            port=port,
            echo=console.print,
        )


def _latest_predictions(cfg: CoincastConfig, *, symbol: str | None, alias: str) -> tuple:
    """Through a running `coincast serve-model` of this home when there is one (no model
    load), else in this process; and a note naming the service for the table title."""
    from ml_core.service import fetch_latest, running_service

    url = running_service(cfg, alias)
    if url is not None:
        try:
            return fetch_latest(url, symbol=symbol), f", served at {url}"
        except OSError as exc:  # it stopped answering: score here instead
            console.print(f"[dim]the service at {url} did not answer ({exc}); scoring here[/dim]")
    from ml_core.serving import predict_latest

    return predict_latest(cfg, symbol=symbol, alias=alias), ""


def _p_text(p: float) -> str:
    return "no edge" if p < 0 else f"{p:.3f}"


@app.command()
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="Version to make champion.")] = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit.")] = "manual rollback",
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Move the champion back to `previous` (or --to VERSION), audited like a promotion."""
    from ml_core.data.warehouse import Warehouse
    from ml_core.registry.promotion import rollback as registry_rollback
    from ml_core.registry.store import RegistryStore

    with _user_errors():
        cfg = _config(home, config, timeframe)
        row = registry_rollback(
            RegistryStore(cfg.tracking_uri, cfg.model_name),
            Warehouse(cfg.warehouse_path),
            to_version=to,
            reason=reason,
            actor=f"cli:{os.environ.get('USER', 'unknown')}",
        )
    console.print(
        f"Rolled back {cfg.model_name}: champion v{row['champion_before']} -> "
        f"v{row['champion_after']} ({row['reason']}); audit id {row['id']}."
    )


@app.command()
def score(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Only these symbols (repeatable).")
    ] = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Run the predict flow: score new bars with champion (+ shadows), store predictions."""
    with _user_errors():
        cfg = _config(home, config, timeframe, flows=True)
        from flows.params import PredictParams
        from flows.predict import predict_flow

        with _flow_logging(cfg):
            summary = predict_flow(
                PredictParams(
                    **_run_fields(cfg, config),
                    symbols=symbol or None,
                )
            )
    console.print(
        f"Scored {summary['n_scored']:,} rows ({summary['n_written']:,} written) for "
        f"{summary['n_symbols']} symbols from {summary['n_candles_read']:,} candle rows read."
    )
    for who, n in summary["scored_by_version"].items():
        console.print(f"  {who}: {n:,} rows")


@app.command()
def monitor(
    no_rollback: Annotated[
        bool, typer.Option("--no-rollback", help="Report only; never move the champion.")
    ] = False,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
) -> None:
    """Run the monitor flow: realized metrics, drift, automatic rollback on breach."""
    with _user_errors():
        cfg = _config(home, config, timeframe, flows=True)
        from flows.monitor import monitor_flow
        from flows.params import MonitorParams

        with _flow_logging(cfg):
            out = monitor_flow(
                MonitorParams(
                    **_run_fields(cfg, config),
                    allow_rollback=not no_rollback,
                )
            )
    console.print(
        f"Monitor {out['model_name']}: {out['n_outcomes']:,} realized outcomes "
        f"({out['window_start']} .. {out['window_end']}), {out['n_drifted']} drifted feature(s)."
    )
    verdict = ("ROLLED BACK", "bold red") if out["rolled_back"] else ("no rollback", "")
    console.print(Text.assemble("  ", verdict, f": {out['reason']}"))


@app.command()
def status(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Warehouse contents, every registered model's champion / challenger / previous, the
    last decisions (only the timeframe's model with --timeframe)."""
    from ml_core.serving import collect_status

    with _user_errors():
        cfg = _config(home, config, timeframe, dataset=False)
        info = collect_status(cfg)
    if as_json:
        _write_json({"home": str(cfg.home.resolve()), "problem": _home_problem(cfg.home), **info})
        return
    console.print(_styled("coincast home", "bold", f": {cfg.home.resolve()}"))
    if (problem := _home_problem(cfg.home)) is not None:
        err_console.print(_styled("warning:", "bold yellow", f" {problem}"))
    if info["candles"] is not None:
        t = Table(title="Warehouse candles")
        for col in ["timeframe", "symbols", "rows", "first", "last"]:
            t.add_column(col)
        for r in info["candles"]:
            t.add_row(
                r["timeframe"], str(r["symbols"]), f"{r['rows']:,}", str(r["first"]), str(r["last"])
            )
        console.print(t)
    else:
        console.print("No warehouse yet: run `coincast ingest PATH` or `make run`.")
    if info.get("quarantine"):
        console.print(_styled("Quarantined batches", "yellow", f": {info['quarantine']}"))
    t = Table(title=f"Registry ({redact_uri(cfg.tracking_uri)})")
    for col in ["model", "alias", "version", "candidate", "test AUC", "served horizons", "fit on"]:
        t.add_column(col)
    for model in info["models"]:
        for r in model["aliases"]:
            t.add_row(
                model["name"],
                r["alias"],
                r["version"],
                r.get("candidate", ""),
                r.get("test_auc", ""),
                r.get("edge_horizons", ""),
                r.get("final_fit", ""),
            )
    if t.row_count:
        console.print(t)
    elif info["models"]:
        names = ", ".join(m["name"] for m in info["models"])
        console.print(f"Registered models {names} have no champion yet: run `coincast retrain`.")
    else:
        console.print("No registered model yet: run `coincast retrain`.")
    for svc in info.get("services", []):
        where = f"{svc['model']}@{svc['alias']} at {svc['url']} (pid {svc['pid']})"
        console.print(
            _styled("Scoring service", "bold", f": {where}; `coincast predict` answers through it")
        )
    for model in info["models"]:
        for r in model["aliases"]:
            if r.get("missing"):
                err_console.print(
                    _styled(
                        "cannot load",
                        "bold red",
                        f" {model['name']} v{r['version']} ({r['alias']}): {r['missing']}. "
                        "Restore the artifact store (mlartifacts/) from a backup, or "
                        "`coincast rollback --to` a version whose files exist, or retrain.",
                    )
                )
    if info["decisions"]:
        t = Table(title="Last decisions")
        for col in ["when (UTC)", "model", "action", "challenger", "champion", "reason"]:
            t.add_column(col)
        for r in info["decisions"]:
            t.add_row(
                str(r["created_at"])[:19],
                r["model_name"],
                r["action"],
                _version(r["challenger_version"]),
                f"{_version(r['champion_before'])} -> {_version(r['champion_after'])}",
                _clip(str(r["reason"])),
            )
        console.print(t)
    if info.get("unfinished_moves"):
        t = Table(title="Unfinished alias moves (the next promote / rollback repairs them)")
        for col in ["since (UTC)", "action", "actor", "pid", "planned"]:
            t.add_column(col)
        for m in info["unfinished_moves"]:
            planned = ", ".join(f"{a}: {b}->{v}" for a, (b, v) in m["planned"].items())
            t.add_row(str(m["created_at"])[:19], m["action"], m["actor"], str(m["pid"]), planned)
        console.print(t)
    for report in info.get("reports", []):
        console.print(f"Latest report: {report}")


def _home_problem(home: Path) -> str | None:
    """Why commands that write (ingest, retrain, ...) would fail in ``home``, or None."""
    home = home.resolve()
    existing = next(p for p in (home, *home.parents) if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == home else f"cannot be created: {existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == home else f"cannot be created in {existing}"
    else:
        return None
    return (
        f"the home {home} {what}; commands that write (ingest, retrain, score) will fail. "
        "Use --home / COINCAST_HOME to point at a folder you can write to."
    )


DataSetsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--timeframe",
        "-t",
        help="Data set(s) to serve, repeatable (default: every timeframe in the warehouse).",
    ),
]


@app.command()
def serve(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: DataSetsOpt = None,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at the same time.")] = None,
    work_pool: Annotated[
        str | None,
        typer.Option(help="Register in this work pool for `prefect worker` instead of serving."),
    ] = None,
) -> None:
    """Register the deployments (weekly retrain, daily predict/monitor, ...) and run them.

    Serves against the Prefect server in PREFECT_API_URL; blocks until Ctrl-C.
    """
    from deployments import register_in_work_pool
    from deployments import serve as serve_deployments

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        config_path = str(config.resolve()) if config else None
        if work_pool:
            for name in register_in_work_pool(cfg, work_pool, config_path, timeframe):
                console.print(f"registered {name} in work pool {work_pool}")
            return
        serve_deployments(cfg, config_path, limit=limit, timeframes=timeframe)


@app.command()
def ui(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: DataSetsOpt = None,
    prefect_port: Annotated[int | None, typer.Option(help="Prefect UI/API port.")] = None,
    mlflow_port: Annotated[int | None, typer.Option(help="MLflow UI port.")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Servers only.")] = False,
) -> None:
    """Start the Prefect server, the MLflow UI and the deployment server on 127.0.0.1.

    Prints the URLs; Ctrl-C stops all of them.
    """
    from deployments.servers import run_ui

    with _user_errors():
        cfg = _config(home, config, dataset=False)
        ports = {"prefect_port": prefect_port, "mlflow_port": mlflow_port}
        cfg = cfg.model_copy(
            update={
                "deployments": cfg.deployments.model_copy(
                    update={k: v for k, v in ports.items() if v is not None}
                )
            }
        )
        run_ui(
            cfg,
            str(config.resolve()) if config else None,
            serve=not no_serve,
            echo=console.print,
            timeframes=timeframe or (),
        )


@config_app.command("show")
def config_show(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    timeframe: TimeframeOpt = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Settings profile.")] = None,
    changed: Annotated[
        bool,
        typer.Option("--changed", help="Only settings set by a profile, file, variable or flag."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every setting a command would run with, and where it came from (default, profile,
    file, environment, command line)."""
    import json

    from ml_core.config import config_sources

    with _user_errors():
        cfg, sources = config_sources(config, **_overrides(home, timeframe, profile))
        from ml_core.data.datasets import available_timeframes, timeframe_is_explicit

        found = [] if timeframe_is_explicit(cfg) else available_timeframes(cfg)
        if len(found) == 1:  # what the commands do: the data set's only timeframe
            sources["data.timeframe"] = (found[0], "warehouse (its only timeframe)")
        elif found:
            sources["data.timeframe"] = ("-", f"name one with -t: {', '.join(found)}")
    rows = [(k, v, w) for k, (v, w) in sources.items() if not changed or w != "default"]
    if as_json:
        _write_json({k: {"value": v, "source": w} for k, v, w in rows})
        return
    t = Table(title="Effective configuration" + (" (changed settings)" if changed else ""))
    t.add_column("setting", no_wrap=True)
    t.add_column("value", overflow="fold")
    t.add_column("from", overflow="fold")
    for key, value, where in rows:
        shown = json.dumps(value, default=str) if not isinstance(value, str) else value
        t.add_row(key, redact_text(shown), where, style="dim" if where == "default" else None)
    console.print(t)


def _write_json(payload: object) -> None:
    """``payload`` as one strict JSON line on stdout (NaN as null, times as ISO text)."""
    import json
    import math

    def clean(value: object) -> object:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if value is None or isinstance(value, str | int | float | bool):
            return value
        if hasattr(value, "isoformat"):
            return None if value != value else value.isoformat()  # NaT != NaT
        return str(value)

    sys.stdout.write(json.dumps(clean(payload), allow_nan=False) + "\n")


def _clip(text: str, limit: int = 120) -> str:
    """A long text for a table cell: whole words, at most ``limit`` characters, and " ..."
    when cut (`coincast status --json` has every decision reason in full)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _version(value: object) -> str:
    """A registry version for display; missing (None/NaN) as a dash."""
    return "-" if value is None or value != value else str(value)


if __name__ == "__main__":
    app()
