"""The shared training loop and ``TorchFrameModel``, the base of every sequence model.

One loop for all four networks: AdamW, gradient-norm clipping, linear warmup
then cosine learning-rate decay, early stopping on the validation loss with
the best checkpoint restored, seeded (a forked RNG, so the caller's global
torch RNG is left as it was) and deterministic on CPU. The loss is a masked
multi-horizon binary cross-entropy: a NaN label (horizon not elapsed, or
beyond a segment end) drops out of its horizon only, and horizons are
weighted (by default 1/sqrt(h): shorter horizons count more).

A network subclass only builds ``nn.Module(x, mask) -> logits (B, H)`` where
``x`` is ``(B, window, F)`` and ``mask`` ``(B, window)`` marks real bars (the
last position is bar t). ``TorchFrameModel`` does the rest of the
``FrameModel`` protocol: windows (``windows.WindowIndex``), the cap on
training windows, P(up) in eval mode, MC-dropout uncertainty (seeded, so a
pipeline predicts the same numbers after a registry round trip), and pickling
as ``state_dict`` + constructor arguments, loaded back on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml_core.config import ModelConfig, SequenceConfig
from ml_core.errors import ConfigError, DataContractError, NotFittedError
from ml_core.models.sequence.windows import WindowIndex

log = logging.getLogger(__name__)

#: Validation windows scored per epoch at most (evenly spaced over the period).
MAX_VAL_WINDOWS = 10_000
#: Windows per forward pass when predicting (MC passes included).
PREDICT_CHUNK = 4096


@dataclass
class TrainReport:
    """What one fit did: sizes, epochs, losses and speed."""

    n_train_windows: int
    n_val_windows: int
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("nan")
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def sequence_config(cfg: ModelConfig, name: str) -> SequenceConfig:
    """``cfg.sequence`` with the overrides of ``models.params[name]`` applied."""
    overrides = cfg.params_for(name)
    if not overrides:
        return cfg.sequence
    unknown = sorted(set(overrides) - set(SequenceConfig.model_fields))
    if unknown:
        raise ConfigError(
            f"models.params[{name!r}] has unknown keys {unknown}; a sequence model accepts "
            f"{sorted(SequenceConfig.model_fields)}."
        )
    return SequenceConfig.model_validate({**cfg.sequence.model_dump(), **overrides})


def horizon_weights(spec: str | list[float], horizons: list[int]) -> np.ndarray:
    """Loss weight per horizon, normalised to sum to 1.

    >>> horizon_weights("inverse_sqrt", [1, 4]).round(3).tolist()
    [0.667, 0.333]
    """
    if spec == "inverse_sqrt":
        w = 1.0 / np.sqrt(np.asarray(horizons, dtype=float))
    elif spec == "equal":
        w = np.ones(len(horizons))
    else:
        w = np.asarray(spec, dtype=float)
        if len(w) != len(horizons):
            raise ConfigError(
                f"sequence.horizon_weights has {len(w)} numbers for {len(horizons)} horizons "
                f"{horizons}; give one per horizon or use 'inverse_sqrt'."
            )
    return w / w.sum()


def masked_bce(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted BCE over the labelled (non-NaN) entries of ``y`` (B, H)."""
    known = ~torch.isnan(y)
    target = torch.where(known, y, torch.zeros_like(y))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = known.to(logits.dtype) * weights.reshape(1, -1)
    return (loss * w).sum() / w.sum().clamp_min(1e-12)


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, floor: float = 0.1) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to ``floor``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_device(name: str) -> torch.device:
    """``cpu``; ``cuda`` (must be available); ``auto`` = CUDA when available."""
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise ConfigError(
            "sequence.device='cuda' but torch sees no CUDA device; use 'auto' or 'cpu'."
        )
    return torch.device("cpu")


@contextlib.contextmanager
def torch_scope(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seeded, forked torch RNG and (optionally) a thread count, restored afterwards."""
    before = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            if num_threads is not None:
                torch.set_num_threads(before)


def train_network(
    net: nn.Module,
    train: tuple[WindowIndex, torch.Tensor, torch.Tensor],
    val: tuple[WindowIndex, torch.Tensor, torch.Tensor] | None,
    *,
    window: int,
    cfg: SequenceConfig,
    weights: np.ndarray,
    seed: int,
    device: torch.device,
) -> TrainReport:
    """Fit ``net`` in place on (index, positions, labels) windows; best val checkpoint kept."""
    index, pos, y = train
    report = TrainReport(n_train_windows=len(pos), n_val_windows=0 if val is None else len(val[1]))
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(pos) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup_steps=cfg.warmup_steps, total_steps=total)
    )
    w = torch.as_tensor(weights, dtype=torch.float32, device=device)
    best_loss, best_state, bad = math.inf, None, 0
    seen, t0 = 0, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        perm = torch.from_numpy(rng.permutation(len(pos)))
        train_loss = 0.0
        for start in range(0, len(pos), cfg.batch_size):
            batch = perm[start : start + cfg.batch_size]
            x, mask = index.gather(pos[batch], window, device)
            loss = masked_bce(net(x, mask), y[batch].to(device), w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_norm)
            opt.step()
            sched.step()
            train_loss += loss.item() * len(batch)
            seen += len(batch)
        val_loss = _eval_loss(net, val, window, cfg.batch_size * 4, w, device)
        report.history.append(
            {"epoch": epoch, "train_loss": train_loss / len(pos), "val_loss": val_loss}
        )
        report.epochs_run = epoch
        log.info("epoch %d: train loss %.5f, val loss %.5f", epoch, train_loss / len(pos), val_loss)
        if val is None or math.isnan(val_loss):
            continue
        if val_loss < best_loss - 1e-6:
            best_loss, bad, report.best_epoch = val_loss, 0, epoch
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        report.best_epoch = report.epochs_run
    report.best_val_loss = best_loss if best_state is not None else float("nan")
    report.train_seconds = time.perf_counter() - t0
    report.samples_per_second = seen / max(report.train_seconds, 1e-9)
    net.eval()
    return report


def _eval_loss(
    net: nn.Module,
    val: tuple[WindowIndex, torch.Tensor, torch.Tensor] | None,
    window: int,
    batch_size: int,
    w: torch.Tensor,
    device: torch.device,
) -> float:
    if val is None or len(val[1]) == 0:
        return float("nan")
    index, pos, y = val
    net.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(pos), batch_size):
            sl = slice(start, start + batch_size)
            x, mask = index.gather(pos[sl], window, device)
            yb = y[sl].to(device)
            n_known = float((~torch.isnan(yb)).to(torch.float32).mul(w).sum())
            total += float(masked_bce(net(x, mask), yb, w)) * n_known
            weight += n_known
    return total / weight if weight else float("nan")


class TorchFrameModel:
    """``FrameModel`` over windows of past bars; subclasses build the network.

    ``fit_frame`` replaces every fitted attribute (``network_``, ...), so
    ``copy.deepcopy(model).fit_frame(...)`` refits the same configuration.
    """

    name = "sequence"
    #: ``predict_frame_details(frame, rows=...)`` scores only the given rows.
    scores_rows = True

    def __init__(self, cfg: SequenceConfig, *, seed: int = 42) -> None:
        self.cfg = cfg
        self.seed = int(cfg.seed if cfg.seed is not None else seed)

    # ---- what subclasses provide
    @property
    def window(self) -> int:
        """Bars one prediction reads, bar t included."""
        return self.cfg.window

    def build_network(self, n_features: int, n_horizons: int) -> nn.Module:
        raise NotImplementedError

    # ---- FrameModel protocol
    @property
    def history_bars(self) -> int:
        return self.window - 1

    def fit_frame(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame | None,
        *,
        features: list[str],
        horizons: list[int],
    ) -> TorchFrameModel:
        """Fit on the most recent ``max_train_windows`` labelled windows of ``train``."""
        labels = [f"up_{h}" for h in horizons]
        missing = [c for c in labels if c not in train.columns]
        if missing:
            raise DataContractError(
                f"{self.name}: training frame lacks label columns {missing}; build it with "
                f"build_model_frame for horizons {list(horizons)}."
            )
        weights = horizon_weights(self.cfg.horizon_weights, list(horizons))
        train_set = _labelled_windows(train, features, labels, self.cfg.max_train_windows)
        if len(train_set[1]) == 0:
            raise DataContractError(f"{self.name}: no labelled training rows for {labels}.")
        val_set = None
        if val is not None and not val.empty and all(c in val.columns for c in labels):
            val_set = _labelled_windows(val, features, labels, MAX_VAL_WINDOWS, spread=True)
            val_set = val_set if len(val_set[1]) else None
        device = resolve_device(self.cfg.device)
        with torch_scope(self.seed, self.cfg.num_threads):
            net = self.build_network(len(features), len(horizons)).to(device)
            report = train_network(
                net,
                train_set,
                val_set,
                window=self.window,
                cfg=self.cfg,
                weights=weights,
                seed=self.seed,
                device=device,
            )
        self.network_ = net.cpu().eval()
        self.net_args_ = (len(features), len(horizons))
        self.features_ = list(features)
        self.horizons_ = list(horizons)
        self.report_ = report
        log.info(
            "%s: %d windows, %d epochs (best %d) in %.1f s, %.0f samples/s",
            self.name,
            report.n_train_windows,
            report.epochs_run,
            report.best_epoch,
            report.train_seconds,
            report.samples_per_second,
        )
        return self

    def predict_frame(self, frame: pd.DataFrame) -> dict[int, np.ndarray]:
        """P(up) per horizon for every row of ``frame`` (eval mode: no dropout)."""
        return {h: d["p_up"] for h, d in self.predict_frame_details(frame, mc_passes=0).items()}

    def predict_frame_details(
        self,
        frame: pd.DataFrame,
        *,
        mc_passes: int | None = None,
        rows: np.ndarray | None = None,
    ) -> dict[int, dict[str, np.ndarray]]:
        """``p_up`` (eval mode) and ``uncertainty`` (std of P(up) over seeded MC-dropout passes).

        ``rows`` (positions in ``frame``) scores only those rows (the others
        are NaN) while every row still serves as history: serving the latest
        bar needs one window, not ``history_bars + 1``.
        """
        net = self._fitted()
        passes = self.cfg.mc_passes if mc_passes is None else mc_passes
        index = WindowIndex.from_frame(frame, features=self.features_)
        targets = np.arange(index.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        positions = index.positions(targets)
        p = np.full((index.n_rows, len(self.horizons_)), np.nan)
        u = np.full_like(p, np.nan)
        chunk = max(1, PREDICT_CHUNK // max(passes, 1))
        with torch_scope(self.seed, self.cfg.num_threads), torch.no_grad():
            for start in range(0, len(targets), chunk):
                sl = slice(start, start + chunk)
                x, mask = index.gather(positions[sl], self.window)
                net.eval()
                p[targets[sl]] = torch.sigmoid(net(x, mask)).numpy()
                if passes > 0:
                    u[targets[sl]] = _mc_std(net, x, mask, passes)
        net.eval()
        out: dict[int, dict[str, np.ndarray]] = {}
        for j, h in enumerate(self.horizons_):
            out[h] = {"p_up": p[:, j]}
            if passes > 0:
                out[h]["uncertainty"] = u[:, j]
        return out

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        return None

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {"model": self.name, "seed": self.seed, **self.cfg.model_dump()}
        out["window"] = self.window
        if hasattr(self, "report_"):
            report = asdict(self.report_)
            report.pop("history")
            out.update({f"fit_{k}": v for k, v in report.items()})
        return out

    # ---- pickling: state_dict + constructor args, rebuilt on CPU
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        net = state.pop("network_", None)
        if net is not None:
            state["network_state_"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        weights = state.pop("network_state_", None)
        self.__dict__.update(state)
        if weights is not None:
            with torch.random.fork_rng(devices=[]):
                net = self.build_network(*self.net_args_)
            net.load_state_dict(weights)
            self.network_ = net.eval()

    def _fitted(self) -> nn.Module:
        net = getattr(self, "network_", None)
        if net is None:
            raise NotFittedError(f"{type(self).__name__}.predict_frame called before fit_frame.")
        return net


def _mc_std(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, passes: int) -> np.ndarray:
    """Std of P(up) over ``passes`` dropout samples of the same windows (one forward)."""
    net.train()
    b = x.shape[0]
    probs = torch.sigmoid(net(x.repeat(passes, 1, 1), mask.repeat(passes, 1)))
    net.eval()
    return probs.reshape(passes, b, -1).std(dim=0, unbiased=False).numpy()


def _labelled_windows(
    frame: pd.DataFrame,
    features: list[str],
    labels: list[str],
    cap: int | None,
    *,
    spread: bool = False,
) -> tuple[WindowIndex, torch.Tensor, torch.Tensor]:
    """Index + target positions + labels (NaN kept) of rows with any label.

    Over ``cap`` rows: the most recent ones by ts, or (``spread``) evenly spaced.
    """
    index = WindowIndex.from_frame(frame, features=features)
    y_all = frame[labels].to_numpy(dtype=np.float32, na_value=np.nan)[index.order]
    rows = np.flatnonzero(~np.isnan(y_all).all(axis=1))
    if cap is not None and len(rows) > cap:
        if spread:
            rows = rows[np.linspace(0, len(rows) - 1, cap).round().astype(np.int64)]
        else:
            recent = np.argsort(index.ts[rows], kind="stable")[-cap:]
            rows = np.sort(rows[recent])
    return index, torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(y_all[rows])
