"""Flow `predict`: score the new candles with the champion (and shadows), store predictions."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import PredictParams
from tasks.data import download_configured
from tasks.predict import (
    load_scorers,
    publish_predictions,
    read_new_candles,
    score_new_bars,
    store_predictions,
)


@flow(name="predict", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def predict_flow(params: PredictParams = PredictParams()) -> dict:  # noqa: B008 - typed default
    """Score every bar not scored yet by champion, challenger and previous; upsert the rows."""
    cfg = params.load()
    if params.download:
        download_configured(cfg)  # nothing when no source is configured
    scorers = load_scorers(cfg)
    window, cursors = read_new_candles(cfg, scorers, params.symbols)
    predictions = score_new_bars(cfg, window, cursors, scorers)
    n_written = store_predictions(cfg, predictions)
    return publish_predictions(cfg, window, predictions, n_written)
