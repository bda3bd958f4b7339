"""The on-demand promote applies the weekly retrain's rules, PBO included: the selection
stats of the retrain that registered a version travel with it (tag coincast.selection)."""

from __future__ import annotations

import json

import pytest

from ml_core.config import load_config
from ml_core.registry.store import RegistryStore
from tasks.registry import SELECTION_TAG
from tests.fitted_registry import fit_versions, store_candles

pytestmark = pytest.mark.slow

SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
HORIZONS = [15, 60]


@pytest.fixture(scope="module")
def promote_home(tmp_path_factory, sample_1m):
    home = tmp_path_factory.mktemp("promote") / "home"
    cfg_path = home.parent / "config.json"
    cfg_path.write_text(
        json.dumps(
            {
                "home": str(home),
                "labels": {"horizons": {"1m": HORIZONS}, "triple_barrier": {"enabled": False}},
                # the skill rule off: the PBO rule is the one that decides here
                "registry": {"require_beat_baselines": False},
            }
        )
    )
    cfg = load_config(cfg_path)
    subset = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(2 * 1440)
    store_candles(cfg, subset)
    subset = subset.assign(timeframe="1m", ts=lambda f: f["ts"].dt.tz_localize(None))
    fit_versions(subset.reset_index(drop=True), cfg, horizons=HORIZONS, train_bars=1440)
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    for alias in ("champion", "previous"):
        store.delete_alias(alias)  # no champion: the on-demand promote decides a first one
    return cfg, cfg_path, store


def _selection(pbo: float) -> dict:
    return {
        "n_trials": 4,
        "n_configs": 4,
        "pbo": pbo,
        "n_periods": 64,
        "n_partitions": 16,
        "prob_oos_loss": 0.5,
        "dsr": 0.1,
        "dsr_by_horizon": {"15": 0.1, "60": 0.1},
        "note": "",
    }


def test_an_on_demand_promote_applies_the_registering_retrains_pbo(prefect_harness, promote_home):
    from flows.params import RunParams
    from flows.promote import promote_flow

    cfg, cfg_path, store = promote_home
    params = RunParams(config_path=str(cfg_path))

    store.set_version_tags("1", {SELECTION_TAG: json.dumps(_selection(0.9))})
    refused = promote_flow(params, challenger_version="1")
    assert not refused["promote"]
    assert "PBO 0.900 is not below the threshold 0.500" in refused["reason"]
    assert refused["metrics"]["pbo"] == pytest.approx(0.9)
    assert store.get_alias("champion") is None

    # v2 was registered without selection stats (no choice made): PBO not applicable
    untagged = promote_flow(params, challenger_version="2")
    assert untagged["promote"], untagged["reason"]
    assert untagged["metrics"]["rules"]["pbo"] == "not applicable"
    assert store.get_alias("champion").version == "2"
