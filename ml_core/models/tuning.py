"""Optuna tuning: one persistent study per (model, horizon group), best params for retrains.

A study maximises the mean validation AUC over the horizons of its group, on
the purged chronological split (``SplitParts.val``; test rows are never read).
Each horizon scored is reported to Optuna (``trial.report``), so a
``MedianPruner`` stops trials that trail the median of earlier ones. Studies
live in an RDB storage (``sqlite:///<home>/optuna.db`` by default) and are
resumed by the next run; the sampler is a seeded ``TPESampler``.

The best parameters are kept as study user attributes and in
``<home>/tuned_params.json``; ``apply_tuned_params(cfg)`` merges them into
``cfg.models.params`` so the next retrain's factories use them.

Example::

    data = prepare_tuning_data(parts, columns=cols, horizons=cfg.horizons, max_train_rows=100_000)
    outcome = run_study(cfg, "lightgbm", "all", cfg.horizons, data)
    save_tuned_params(cfg, [outcome])
    cfg = apply_tuned_params(cfg)     # what the next retrain trains with
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_core.config import CoincastConfig, ModelConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.evaluation.metrics import classification_metrics
from ml_core.models.base import (
    CONTEXT_COLUMNS,
    MODEL_FACTORIES,
    is_frame_model,
    is_label_column,
    make_model,
)
from ml_core.validation.scaling import SymbolRobustScaler
from ml_core.validation.split import SplitParts

if TYPE_CHECKING:  # optuna is imported where a study runs: a retrain never pays for it
    import optuna

log = logging.getLogger(__name__)

TUNED_PARAMS_FILE = "tuned_params.json"
_FILE_VERSION = 1


# ---------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]


ParamSpace = FloatRange | IntRange | Choice

#: Torch sequence models (keys of ``SequenceConfig``; widths divisible by every head count).
_SEQUENCE_SPACE: dict[str, ParamSpace] = {
    "hidden": Choice((16, 32, 64)),
    "layers": IntRange(1, 2),
    "dropout": FloatRange(0.0, 0.4),
    "lr": FloatRange(3e-4, 1e-2, log=True),
    "weight_decay": FloatRange(1e-6, 1e-2, log=True),
    "window": Choice((30, 60, 120)),
}

#: Search space per model name; names not in ``MODEL_FACTORIES`` are skipped.
#: Parameter names are those each factory reads from ``cfg.params_for(name)``.
SEARCH_SPACES: dict[str, dict[str, ParamSpace]] = {
    "logistic": {"c": FloatRange(1e-4, 10.0, log=True)},
    "lightgbm": {
        "num_leaves": IntRange(7, 127, log=True),
        "learning_rate": FloatRange(0.005, 0.2, log=True),
        "min_child_samples": IntRange(20, 2000, log=True),
        "colsample_bytree": FloatRange(0.3, 1.0),
        "subsample": FloatRange(0.4, 1.0),
        "reg_lambda": FloatRange(1e-3, 30.0, log=True),
        "n_estimators": IntRange(100, 800, step=50),
    },
    "xgboost": {
        "max_depth": IntRange(2, 8),
        "learning_rate": FloatRange(0.005, 0.2, log=True),
        "min_child_weight": FloatRange(1.0, 500.0, log=True),
        "subsample": FloatRange(0.4, 1.0),
        "colsample_bytree": FloatRange(0.3, 1.0),
        "reg_lambda": FloatRange(1e-3, 30.0, log=True),
        "n_estimators": IntRange(100, 800, step=50),
    },
    "random_forest": {
        "n_estimators": IntRange(50, 300, step=25),
        "max_depth": IntRange(3, 14),
        "min_samples_leaf": IntRange(20, 2000, log=True),
        "max_features": FloatRange(0.1, 0.8),
    },
    "lstm": _SEQUENCE_SPACE,
    "attention_lstm": _SEQUENCE_SPACE,
    "multiscale_lstm": {**_SEQUENCE_SPACE, "heads": Choice((2, 4))},
    "transformer": {**_SEQUENCE_SPACE, "layers": IntRange(1, 3), "heads": Choice((2, 4))},
}


def tunable_models() -> list[str]:
    """Models with a search space that ``make_model`` can build."""
    return sorted(n for n in SEARCH_SPACES if n in MODEL_FACTORIES)


def check_tunable(names: list[str]) -> list[str]:
    """``names`` when every one has a search space and a factory; ``ConfigError`` otherwise."""
    if not names:
        raise ConfigError("tuning.models is empty; name a model to tune, e.g. ['lightgbm'].")
    bad = [n for n in names if n not in tunable_models()]
    if bad:
        raise ConfigError(
            f"Cannot tune {bad}: no search space or no model of that name. "
            f"Tunable models: {tunable_models()} (set tuning.models or --candidate)."
        )
    return list(dict.fromkeys(names))


def suggest_params(trial: optuna.Trial, name: str) -> dict[str, Any]:
    """One draw from model ``name``'s search space."""
    out: dict[str, Any] = {}
    for key, space in SEARCH_SPACES[name].items():
        if isinstance(space, FloatRange):
            out[key] = trial.suggest_float(key, space.low, space.high, log=space.log)
        elif isinstance(space, IntRange):
            step = 1 if space.log else space.step
            out[key] = trial.suggest_int(key, space.low, space.high, log=space.log, step=step)
        else:
            out[key] = trial.suggest_categorical(key, list(space.choices))
    return out


# ---------------------------------------------------------------- plan and names
def horizon_groups(horizons: list[int], mode: str) -> dict[str, list[int]]:
    """``{'all': horizons}`` or ``{'short': <= median, 'long': > median}`` (empty groups dropped)."""
    hs = sorted(horizons)
    if mode == "all":
        return {"all": hs}
    if mode != "short_long":
        raise ConfigError(f"tuning.horizon_groups={mode!r}; use 'all' or 'short_long'.")
    median = float(np.median(hs))
    groups = {"short": [h for h in hs if h <= median], "long": [h for h in hs if h > median]}
    return {k: v for k, v in groups.items() if v}


def study_name(model_name: str, candidate: str, group: str) -> str:
    """``<registered model>-<candidate>-<horizon group>``, e.g. ``coincast-lightgbm-all``."""
    return f"{model_name}-{candidate}-{group}"


def tuning_plan(cfg: CoincastConfig) -> list[tuple[str, str, list[int]]]:
    """(candidate, horizon group, horizons) of every study a tune run works on."""
    groups = horizon_groups(cfg.horizons, cfg.tuning.horizon_groups)
    return [
        (name, group, hs)
        for name in check_tunable(cfg.tuning.models)
        for group, hs in groups.items()
    ]


def storage_url(cfg: CoincastConfig) -> str:
    """The Optuna storage URL: ``tuning.storage_url`` or ``sqlite:///<home>/optuna.db``."""
    return cfg.tuning.storage_url or f"sqlite:///{cfg.home.resolve() / 'optuna.db'}"


def tuned_params_path(cfg: CoincastConfig) -> Path:
    return cfg.home.resolve() / TUNED_PARAMS_FILE


# ---------------------------------------------------------------- data of a study
@dataclass
class TuningData:
    """Scaled training and validation rows shared by every trial (scaler fit on train)."""

    train: pd.DataFrame
    val: pd.DataFrame
    columns: list[str]
    scaler: SymbolRobustScaler

    @cached_property
    def x_train(self) -> np.ndarray:
        return self.scaler.transform(self.train)

    @cached_property
    def x_val(self) -> np.ndarray:
        return self.scaler.transform(self.val)

    @cached_property
    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Scaled train / val frames with context and label columns (FrameModel input)."""
        return self._scaled(self.train, self.x_train), self._scaled(self.val, self.x_val)

    def labels(self, part: str, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """(mask of labelled rows, their 0/1 labels) of ``part`` for ``horizon``."""
        frame = self.train if part == "train" else self.val
        y = frame[f"up_{horizon}"].to_numpy(dtype=float)
        ok = ~np.isnan(y)
        return ok, y[ok]

    def _scaled(self, frame: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        keep = [c for c in frame.columns if c in CONTEXT_COLUMNS or is_label_column(c)]
        scaled = pd.DataFrame(x, columns=self.columns, index=frame.index)
        return pd.concat([frame[keep], scaled], axis=1).reset_index(drop=True)


def prepare_tuning_data(
    parts: SplitParts, *, columns: list[str], horizons: list[int], max_train_rows: int | None
) -> TuningData:
    """Recent training rows and the validation part, checked and scaled once per tune run."""
    if parts.val.empty:
        raise DataContractError(
            "The validation part is empty: tuning scores on validation only. "
            "Ingest more history or raise split.val_frac."
        )
    train = parts.train
    if max_train_rows is not None and len(train) > max_train_rows:
        cutoff = train["ts"].sort_values().iloc[len(train) - max_train_rows]
        train = train.loc[train["ts"] >= cutoff].reset_index(drop=True)
    for part_name, frame in (("train", train), ("val", parts.val)):
        for h in horizons:
            y = frame[f"up_{h}"].dropna()
            if y.nunique() < 2:
                raise DataContractError(
                    f"Horizon {h}: {part_name} labels up_{h} hold fewer than two classes "
                    f"({len(y)} labelled rows); tuning needs both. Ingest more history."
                )
    scaler = SymbolRobustScaler(columns).fit(train)
    return TuningData(
        train=train, val=parts.val.reset_index(drop=True), columns=columns, scaler=scaler
    )


# ---------------------------------------------------------------- objective
def score_params(
    candidate: str,
    model_cfg: ModelConfig,
    data: TuningData,
    horizons: list[int],
    report: Callable[[int, float], None] | None = None,
) -> dict[int, float]:
    """Validation AUC per horizon of ``candidate`` fitted with ``model_cfg``.

    ``report(step, mean_auc_so_far)`` is called after each horizon (pruning hook;
    it may raise to stop early).
    """
    model = make_model(candidate, model_cfg)
    aucs: dict[int, float] = {}
    if is_frame_model(model):
        train_frame, val_frame = data.frames
        model.fit_frame(train_frame, val_frame, features=data.columns, horizons=list(horizons))
        probs = model.predict_frame(val_frame)
        for step, h in enumerate(horizons):
            ok, y = data.labels("val", h)
            aucs[h] = classification_metrics(y, np.asarray(probs[h])[ok])["auc"]
            if report is not None:
                report(step, _mean(aucs))
        return aucs
    for step, h in enumerate(horizons):
        ok, y = data.labels("train", h)
        ok_v, y_v = data.labels("val", h)
        fitted = make_model(candidate, model_cfg).fit(data.x_train[ok], y, data.x_val[ok_v], y_v)
        aucs[h] = classification_metrics(y_v, fitted.predict_proba(data.x_val[ok_v]))["auc"]
        if report is not None:
            report(step, _mean(aucs))
    return aucs


def _mean(aucs: dict[int, float]) -> float:
    values = [v for v in aucs.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else 0.5


def trial_model_config(
    model_cfg: ModelConfig, candidate: str, params: dict[str, Any]
) -> ModelConfig:
    """``model_cfg`` with ``params`` merged over the candidate's configured overrides."""
    merged = {**model_cfg.params, candidate: {**model_cfg.params_for(candidate), **params}}
    return model_cfg.model_copy(update={"params": merged})


# ---------------------------------------------------------------- studies
@dataclass
class TrialRecord:
    """One finished trial, as plain values (what tracking and reports need)."""

    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None
    params: dict[str, Any]
    aucs: dict[str, float]
    intermediate: dict[int, float]  # mean val AUC after each horizon step (pruning input)
    datetime_start: datetime | None
    datetime_complete: datetime | None


@dataclass
class StudyOutcome:
    """What a tune run did to one study: new trials and the best so far (all sessions)."""

    study_name: str
    candidate: str
    horizon_group: str
    horizons: list[int]
    storage_url: str
    best_params: dict[str, Any] | None
    best_value: float | None
    best_trial: int | None
    n_trials_total: int  # finished trials in storage (complete + pruned), every session
    n_complete: int
    n_pruned: int
    new_trials: list[TrialRecord] = field(default_factory=list)


def open_study(cfg: CoincastConfig, name: str) -> optuna.Study:
    """Create or load study ``name`` in the configured storage (maximising AUC)."""
    import optuna

    url = storage_url(cfg)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    t = cfg.tuning
    study = optuna.create_study(
        study_name=name,
        storage=url,
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=t.pruner_startup_trials, n_warmup_steps=t.pruner_warmup_steps
        ),
    )
    # seeded, and a resumed study draws fresh startup points instead of repeating the first
    study.sampler = optuna.samplers.TPESampler(seed=t.seed + len(study.trials))
    return study


def run_study(
    cfg: CoincastConfig,
    candidate: str,
    group: str,
    horizons: list[int],
    data: TuningData,
    *,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> StudyOutcome:
    """Run ``n_trials`` more trials (default ``tuning.n_trials``) of one study and return it."""
    import optuna

    check_tunable([candidate])
    name = study_name(cfg.model_name, candidate, group)
    study = open_study(cfg, name)
    n_before = len(study.trials)
    _check_same_objective(study, horizons, storage_url(cfg))
    study.set_user_attr("candidate", candidate)
    study.set_user_attr("horizon_group", group)
    study.set_user_attr("horizons", list(horizons))

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, candidate)
        model_cfg = trial_model_config(cfg.models, candidate, params)

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"mean val AUC {value:.4f} after {step + 1} horizon(s)")

        aucs = score_params(candidate, model_cfg, data, horizons, report)
        for h, auc in aucs.items():
            trial.set_user_attr(f"auc_{h}", auc)
        return _mean(aucs)

    def callback(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        record = _record(frozen)
        log.info(
            "%s trial %d %s: value %s params %s",
            name,
            record.number,
            record.state,
            record.value,
            record.params,
        )
        if on_trial is not None:
            on_trial(record)

    study.optimize(
        objective,
        n_trials=n_trials if n_trials is not None else cfg.tuning.n_trials,
        timeout=timeout_s if timeout_s is not None else cfg.tuning.timeout_s,
        callbacks=[callback],
    )
    outcome = _outcome(study, candidate, group, horizons, storage_url(cfg), n_before)
    if outcome.best_params is not None:
        study.set_user_attr("best_params", outcome.best_params)
        study.set_user_attr("best_value", outcome.best_value)
    return outcome


def _check_same_objective(study: optuna.Study, horizons: list[int], url: str) -> None:
    previous = study.user_attrs.get("horizons")
    if previous is not None and list(previous) != list(horizons):
        raise ConfigError(
            f"Study {study.study_name!r} in {url} was tuned on horizons {previous}, this run "
            f"scores {list(horizons)}: their AUCs do not compare. Delete it "
            f"(`optuna delete-study --study-name {study.study_name} --storage {url}`) "
            "or use another tuning.storage_url."
        )


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        value=None if t.value is None else float(t.value),
        params=dict(t.params),
        aucs={k: float(v) for k, v in t.user_attrs.items() if k.startswith("auc_")},
        intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
        datetime_start=t.datetime_start,
        datetime_complete=t.datetime_complete,
    )


def _outcome(
    study: optuna.Study,
    candidate: str,
    group: str,
    horizons: list[int],
    url: str,
    n_before: int,
) -> StudyOutcome:
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    n_complete = states.count(optuna.trial.TrialState.COMPLETE)
    n_pruned = states.count(optuna.trial.TrialState.PRUNED)
    best = study.best_trial if n_complete else None
    return StudyOutcome(
        study_name=study.study_name,
        candidate=candidate,
        horizon_group=group,
        horizons=list(horizons),
        storage_url=url,
        best_params=dict(best.params) if best else None,
        best_value=float(best.value) if best and best.value is not None else None,
        best_trial=best.number if best else None,
        n_trials_total=n_complete + n_pruned,
        n_complete=n_complete,
        n_pruned=n_pruned,
        new_trials=[_record(t) for t in trials[n_before:] if t.state.is_finished()],
    )


# ---------------------------------------------------------------- tuned params file
def load_tuned_params(path: Path) -> dict[str, Any]:
    """The tuned-params document (empty when the file does not exist)."""
    if not path.exists():
        return {"version": _FILE_VERSION, "models": {}}
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"Tuned parameters file {path} is unreadable ({exc}); delete it and run "
            "`coincast tune` again, or set tuning.apply=false."
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ConfigError(
            f"Tuned parameters file {path} lacks a 'models' mapping; delete it and run "
            "`coincast tune` again."
        )
    return doc


def save_tuned_params(cfg: CoincastConfig, outcomes: list[StudyOutcome]) -> dict[str, Any]:
    """Merge the best params of ``outcomes`` into ``<home>/tuned_params.json``; return its entries.

    Per candidate: ``params`` (what the next retrain uses: the best group's
    parameters), ``study_name``, ``best_value``, ``n_trials``, ``updated_at``,
    ``groups`` (every horizon group's study) and ``n_trials_total`` (finished
    trials over all groups: the count the PBO / deflated Sharpe deflate by).
    """
    path = tuned_params_path(cfg)
    doc = load_tuned_params(path)
    entries = doc["models"].setdefault(cfg.model_name, {})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for o in outcomes:
        if o.best_params is None:
            log.warning("study %s has no completed trial yet; nothing saved", o.study_name)
            continue
        entry = entries.setdefault(o.candidate, {"groups": {}})
        entry["groups"][o.horizon_group] = {
            "study_name": o.study_name,
            "horizons": o.horizons,
            "best_params": o.best_params,
            "best_value": o.best_value,
            "best_trial": o.best_trial,
            "n_trials": o.n_trials_total,
            "n_complete": o.n_complete,
            "n_pruned": o.n_pruned,
            "updated_at": now,
        }
        _summarize(entry, o.candidate)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return entries


def _summarize(entry: dict[str, Any], candidate: str) -> None:
    """Candidate-level fields from its groups (one param set per candidate is applied)."""
    groups = entry["groups"]
    source = "all" if "all" in groups else max(groups, key=lambda g: groups[g]["best_value"])
    if len(groups) > 1:
        log.warning(
            "%s: groups %s tuned; retrains use one parameter set per model, that of %r",
            candidate,
            sorted(groups),
            source,
        )
    best = groups[source]
    entry.update(
        params=best["best_params"],
        source_group=source,
        study_name=best["study_name"],
        best_value=best["best_value"],
        n_trials=best["n_trials"],
        updated_at=best["updated_at"],
        n_trials_total=int(sum(g["n_trials"] for g in groups.values())),
    )


def tuned_params_for(cfg: CoincastConfig) -> dict[str, dict[str, Any]]:
    """Tuned params of this data set's candidates (``{}`` when none or ``tuning.apply`` is off)."""
    if not cfg.tuning.apply:
        return {}
    entries = load_tuned_params(tuned_params_path(cfg))["models"].get(cfg.model_name, {})
    return {
        name: dict(entries[name]["params"])
        for name in cfg.models.candidates
        if name in entries and entries[name].get("params")
    }


def apply_tuned_params(cfg: CoincastConfig) -> CoincastConfig:
    """``cfg`` with tuned params merged over ``models.params`` (tuned values win).

    A new object; ``cfg`` is unchanged. The factories read ``cfg.params_for(name)``.
    """
    tuned = tuned_params_for(cfg)
    if not tuned:
        return cfg
    params = {**cfg.models.params}
    for name, values in tuned.items():
        params[name] = {**params.get(name, {}), **values}
    return cfg.model_copy(update={"models": cfg.models.model_copy(update={"params": params})})


def tuned_trial_count(cfg: CoincastConfig, candidate: str | None = None) -> int:
    """Finished tuning trials behind this data set's tuned params (all candidates, or one).

    The number of configurations tried: what PBO / the deflated Sharpe ratio count.
    """
    entries = load_tuned_params(tuned_params_path(cfg))["models"].get(cfg.model_name, {})
    names = [candidate] if candidate is not None else list(entries)
    return int(sum(entries.get(n, {}).get("n_trials_total", 0) for n in names))
