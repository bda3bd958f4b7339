"""Fit every configured candidate, score it on validation and test, pick the best.

The best candidate is chosen on **validation** AUC; test metrics are reported
and used by the promotion gate, never for selection, so the numbers that
decide a promotion come from time the selection never looked at. The same
holds for the return models (target ``ret_h``): chosen on validation RMSE,
reported on test beside the zero-return and last-return baselines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_core.config import CoincastConfig, EvaluationConfig, ModelConfig
from ml_core.errors import CoincastError
from ml_core.models.base import ReturnModel
from ml_core.models.pipeline import CandlePipeline, _recent, calibrate, fit_pipeline
from ml_core.regime.hmm import RegimeModel
from ml_core.validation.split import SplitParts

log = logging.getLogger(__name__)


@dataclass
class CandidateResult:
    """A fitted candidate with its per-horizon metrics on validation and test."""

    name: str
    pipeline: CandlePipeline
    val_metrics: pd.DataFrame
    test_metrics: pd.DataFrame
    test_probs: dict[int, np.ndarray]
    fit_seconds: float
    test_sliced_metrics: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: Return models on val and test beside the baselines (``score_return_models`` rows
    #: plus ``split`` and ``selected``); shared by all candidates (same regressors).
    regression_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per horizon: the calibration method chosen on validation, test ECE and AUC of the
    #: raw and the calibrated P(up) (``calibration_report``).
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def val_auc(self) -> float:
        return float(self.val_metrics["auc"].mean())

    @property
    def test_auc(self) -> float:
        return float(self.test_metrics["auc"].mean())


def score_probabilities(
    frame: pd.DataFrame,
    probs: dict[int, np.ndarray],
    *,
    eval_cfg: EvaluationConfig,
    timeframe: str,
) -> pd.DataFrame:
    """Classification and trading metrics per horizon for predictions on ``frame``."""
    from ml_core.evaluation.metrics import score_predictions

    rows = [
        {"horizon": h, **score_predictions(frame, p, horizon=h, cfg=eval_cfg, timeframe=timeframe)}
        for h, p in probs.items()
    ]
    return pd.DataFrame(rows)


def sliced_metrics(
    frame: pd.DataFrame, probs: dict[int, np.ndarray], column: str
) -> pd.DataFrame | None:
    """AUC, accuracy and Brier per (horizon, value of ``column``); None without it."""
    from ml_core.evaluation.metrics import classification_metrics

    if column not in frame.columns:
        return None
    rows = []
    values = frame[column].astype(str).to_numpy()
    for h, p in probs.items():
        y = frame[f"up_{h}"].to_numpy(dtype=float)
        for value in sorted(set(values)):
            mask = values == value
            m = classification_metrics(y[mask], p[mask])
            rows.append(
                {
                    "horizon": h,
                    column: value,
                    **{k: m[k] for k in ("n", "auc", "accuracy", "brier")},
                }
            )
    return pd.DataFrame(rows)


#: Columns the test metrics are also sliced by, when the frame has them.
SLICE_COLUMNS = ("regime", "lifecycle")


def slice_all(frame: pd.DataFrame, probs: dict[int, np.ndarray]) -> dict[str, pd.DataFrame]:
    """Sliced metrics for each of ``SLICE_COLUMNS`` present in ``frame``."""
    out = {c: sliced_metrics(frame, probs, c) for c in SLICE_COLUMNS}
    return {c: m for c, m in out.items() if m is not None}


def train_candidates(
    parts: SplitParts, cfg: CoincastConfig, regime_model: RegimeModel | None = None
) -> list[CandidateResult]:
    """Fit and score each candidate of ``cfg.models.candidates``.

    Then the return models of ``cfg.models.regressors`` are fitted once (every
    candidate's scaler is fit on the same rows, so one set serves all), the best
    per horizon on validation RMSE becomes every pipeline's ``return_models``
    (its ``exp_ret``), and the table lands in each ``regression_metrics``.
    """
    results = []
    for name in cfg.models.candidates:
        start = time.perf_counter()
        pipe = fit_pipeline(
            name,
            parts,
            horizons=cfg.horizons,
            timeframe=cfg.data.timeframe,
            feature_cfg=cfg.features,
            model_cfg=cfg.models,
            regime_model=regime_model,
            calibrated=False,  # below, on the validation predictions made once
        )
        val_raw = pipe.predict_features(parts.val, calibrated=False)
        choice = calibrate(
            pipe,
            parts.val,
            cfg.models.calibration,
            raw_val=val_raw,
            conformal_confidence=cfg.models.conformal_confidence,
        )
        fit_s = time.perf_counter() - start
        test_raw = pipe.predict_features(parts.test, calibrated=False)
        test_probs = {h: pipe.calibrated(h, p) for h, p in test_raw.items()}
        kw = {"eval_cfg": cfg.evaluation, "timeframe": cfg.data.timeframe}
        result = CandidateResult(
            name=name,
            pipeline=pipe,
            # selection ranks candidates by validation AUC: the raw p (the calibrator was
            # fitted on these rows; a monotone map leaves the ranking as it was)
            val_metrics=score_probabilities(parts.val, val_raw, **kw),
            test_metrics=score_probabilities(parts.test, test_probs, **kw),
            test_probs=test_probs,
            fit_seconds=fit_s,
            test_sliced_metrics=slice_all(parts.test, test_probs),
            calibration=calibration_report(pipe, parts.test, test_raw, test_probs, choice),
        )
        log.info(
            "candidate %s: val AUC %.4f, test AUC %.4f (%.1fs)",
            name,
            result.val_auc,
            result.test_auc,
            fit_s,
        )
        results.append(result)
    if cfg.models.regressors and results:
        fitted, table = fit_return_models(
            parts, results[0].pipeline, cfg.models, horizons=list(cfg.horizons)
        )
        for r in results:
            _attach_return_models(r.pipeline, results[0].pipeline, fitted)
            r.regression_metrics = table
    return results


def calibration_report(
    pipe: CandlePipeline,
    test: pd.DataFrame,
    raw: dict[int, np.ndarray],
    calibrated: dict[int, np.ndarray],
    choice: pd.DataFrame,
) -> pd.DataFrame:
    """One row per horizon: the method chosen on validation (with its holdout log loss
    against the raw p), and on the **test** rows the expected calibration error and AUC
    of the raw and the calibrated P(up)."""
    from ml_core.evaluation.metrics import classification_metrics, expected_calibration_error
    from ml_core.models.conformal import coverage

    rows = []
    for h in pipe.horizons:
        y = test[f"up_{h}"].to_numpy(float) if not test.empty else np.empty(0)
        cal = pipe.calibrators.get(h)
        picked = choice[(choice["horizon"] == h)] if not choice.empty else choice
        loss = picked.set_index("method")["holdout_log_loss"] if len(picked) else pd.Series()
        method = cal.method if cal is not None else "none"
        raw_m = classification_metrics(y, raw[h]) if y.size else {}
        cal_m = classification_metrics(y, calibrated[h]) if y.size else {}
        sets = coverage(pipe.direction_sets(h, calibrated[h]), y) if y.size else {}
        rows.append(
            {
                "horizon": h,
                "method": method,
                "n_val": cal.n_rows if cal is not None else 0,
                "val_log_loss_raw": float(loss.get("none", np.nan)),
                "val_log_loss": float(loss.get(method, np.nan)),
                "n_test": int(raw_m.get("n", 0) or 0),
                "test_ece_raw": expected_calibration_error(y, raw[h]) if y.size else np.nan,
                "test_ece": expected_calibration_error(y, calibrated[h]) if y.size else np.nan,
                "test_auc_raw": raw_m.get("auc", np.nan),
                "test_auc": cal_m.get("auc", np.nan),
                "test_log_loss_raw": raw_m.get("log_loss", np.nan),
                "test_log_loss": cal_m.get("log_loss", np.nan),
                "set_coverage": sets.get("coverage", np.nan),
                "set_abstain": sets.get("abstain", np.nan),
            }
        )
    return pd.DataFrame(rows)


def evaluate_pipeline(
    pipe: CandlePipeline, parts: SplitParts, cfg: CoincastConfig
) -> CandidateResult:
    """An already fitted pipeline scored on this split's validation and test parts."""
    kw = {"eval_cfg": cfg.evaluation, "timeframe": cfg.data.timeframe}
    val_raw = pipe.predict_features(parts.val, calibrated=False)  # as train_candidates
    test_raw = pipe.predict_features(parts.test, calibrated=False)
    test_probs = {h: pipe.calibrated(h, p) for h, p in test_raw.items()}
    return CandidateResult(
        name=pipe.candidate,
        pipeline=pipe,
        val_metrics=score_probabilities(parts.val, val_raw, **kw),
        test_metrics=score_probabilities(parts.test, test_probs, **kw),
        test_probs=test_probs,
        fit_seconds=0.0,
        test_sliced_metrics=slice_all(parts.test, test_probs),
        calibration=calibration_report(pipe, parts.test, test_raw, test_probs, pd.DataFrame()),
    )


def select_best(results: list[CandidateResult]) -> CandidateResult:
    """The candidate with the highest mean validation AUC (ties: first configured)."""
    if not results:
        raise CoincastError("No candidates were trained; set models.candidates in the config.")
    return max(results, key=lambda r: np.nan_to_num(r.val_auc, nan=-1.0))


def fit_return_models(
    parts: SplitParts, pipe: CandlePipeline, model_cfg: ModelConfig, *, horizons: list[int]
) -> tuple[dict[int, ReturnModel], pd.DataFrame]:
    """Fit every ``model_cfg.regressors`` per horizon; keep the best on validation RMSE.

    Training rows are the pipeline's (the most recent ``max_train_rows``), scaled
    by its scaler, restricted per horizon to rows with a ``ret_h`` label. The
    choice is made **per horizon**: return scales grow with the horizon, so a
    mean RMSE over horizons would be decided by the longest one, and the
    pipeline holds one return model per horizon anyway. Test rows are scored
    after the choice, beside the zero-return and last-return baselines.
    Returns ``({h: chosen model}, table)``; the table has one row per (split,
    horizon, model) with ``selected`` marking the chosen ones.
    """
    from ml_core.evaluation.regression import score_return_models
    from ml_core.models.regression import make_return_model

    train = _recent(parts.train, model_cfg.max_train_rows)
    x_train = pipe.scaler.transform(train)
    has_val = not parts.val.empty
    x_val = pipe.scaler.transform(parts.val) if has_val else None
    x_test = pipe.scaler.transform(parts.test) if not parts.test.empty else None
    fitted: dict[str, dict[int, ReturnModel]] = {name: {} for name in model_cfg.regressors}
    for h in horizons:
        ok = train[f"ret_{h}"].notna().to_numpy()
        x_v = y_v = None
        if x_val is not None:
            ok_v = parts.val[f"ret_{h}"].notna().to_numpy()
            x_v, y_v = x_val[ok_v], parts.val.loc[ok_v, f"ret_{h}"].to_numpy(dtype=float)
        y = train.loc[ok, f"ret_{h}"].to_numpy(dtype=float)
        for name in model_cfg.regressors:
            start = time.perf_counter()
            fitted[name][h] = make_return_model(name, model_cfg).fit(x_train[ok], y, x_v, y_v)
            log.info(
                "return model %s h=%d: %d rows, %.1fs",
                name,
                h,
                int(ok.sum()),
                time.perf_counter() - start,
            )
    tables = []
    for split, frame, x in (("val", parts.val, x_val), ("test", parts.test, x_test)):
        if x is None:
            continue
        preds = {n: {h: m.predict(x) for h, m in per_h.items()} for n, per_h in fitted.items()}
        tables.append(score_return_models(frame, preds, horizons).assign(split=split))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    chosen = _choose_per_horizon(table, model_cfg.regressors, horizons)
    if not table.empty:
        picked = table["horizon"].map(lambda h: chosen.get(int(h)))
        table = table.assign(selected=table["model"] == picked)
        lead = ["split", "horizon", "model"]
        table = table[lead + [c for c in table.columns if c not in lead]]
    for h, name in chosen.items():
        log.info("return model for h=%d: %s (best validation RMSE)", h, name)
    return {h: fitted[name][h] for h, name in chosen.items()}, table


def _choose_per_horizon(
    table: pd.DataFrame, names: list[str], horizons: list[int]
) -> dict[int, str]:
    """Lowest validation RMSE per horizon (ties and no validation: first configured)."""
    if table.empty or "val" not in set(table["split"]):
        return dict.fromkeys(horizons, names[0])
    val = table[(table["split"] == "val") & table["model"].isin(names)]
    out = {}
    for h in horizons:
        rmse = val[val["horizon"] == h].set_index("model")["rmse"]
        scores = [np.nan_to_num(rmse.get(n, np.nan), nan=np.inf) for n in names]
        out[h] = names[int(np.argmin(scores))]
    return out


def _attach_return_models(
    pipe: CandlePipeline, fitted_on: CandlePipeline, models: dict[int, ReturnModel]
) -> None:
    """Give ``pipe`` the return models fitted on ``fitted_on``'s scaled features."""
    if pipe is not fitted_on and not _same_scaling(pipe, fitted_on):
        raise CoincastError(
            f"Candidate {pipe.candidate!r} scales features differently from "
            f"{fitted_on.candidate!r}; return models fitted on one cannot serve the other. "
            "Fit every candidate on the same parts and max_train_rows."
        )
    pipe.return_models = dict(models)


def _same_scaling(a: CandlePipeline, b: CandlePipeline) -> bool:
    sa, sb = a.scaler, b.scaler
    return (
        a.feature_columns == b.feature_columns
        and sa.center_.equals(sb.center_)
        and sa.scale_.equals(sb.scale_)
        and sa.pooled_center_.equals(sb.pooled_center_)
        and sa.pooled_scale_.equals(sb.pooled_scale_)
    )
