"""Replay homes: one COINCAST_HOME per policy, each with the config it runs under.

Policies:

* ``coincast`` - the configured promotion gate (``registry.policy: coincast``);
* ``latest`` - every new challenger is promoted (``registry.policy: latest``);
* ``frozen`` - the gate chooses a first champion, which is then kept forever:
  the replay runs no more retrains there and the monitor never rolls back.

A home's config is the user's settings with its own ``home``, its own MLflow
registry and Optuna storage inside it (so no two policies share state), and
the policy. It is written to ``<out>/<policy>/config.json``; every flow of the
replay loads it, as a deployment would load its ``config_path``.

Example::

    path = write_home_config(cfg.model_dump(mode="json"), policy="latest",
                             home=Path("replay/latest"))
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml_core.errors import ConfigError

POLICIES = ("coincast", "latest", "frozen")
#: The registry policy each replay policy runs its retrains with.
REGISTRY_POLICY = {"coincast": "coincast", "latest": "latest", "frozen": "coincast"}
CONFIG_NAME = "config.json"
#: Marks a folder as a replay home (only such folders are ever removed by ``overwrite``).
MARKER = ".coincast-replay-home"


def check_policies(policies: Sequence[str]) -> list[str]:
    """The policies, validated and de-duplicated in the given order."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise ConfigError(
            f"Unknown or no replay policies {list(policies)}; choose from {list(POLICIES)}."
        )
    return list(dict.fromkeys(policies))


def home_config(base: Mapping[str, Any], *, policy: str, home: Path) -> dict[str, Any]:
    """The config values of ``policy``'s home: ``base`` with its own home, registry and policy."""
    check_policies([policy])
    out = copy.deepcopy(dict(base))
    out["home"] = str(Path(home).resolve())
    registry = dict(out.get("registry") or {})
    registry.update(tracking_uri=None, artifact_location=None, policy=REGISTRY_POLICY[policy])
    out["registry"] = registry
    tuning = dict(out.get("tuning") or {})
    tuning["storage_url"] = None
    out["tuning"] = tuning
    return out


def prepare_home(home: Path, *, overwrite: bool = False) -> Path:
    """Create an empty home folder; refuse a used one unless ``overwrite`` (replay homes only)."""
    home = Path(home)
    if home.exists() and any(home.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"Replay home {home} is not empty (a previous replay?). Pass another output "
                "folder, or overwrite=True (--overwrite) to start it afresh."
            )
        if not (home / MARKER).exists():
            raise ConfigError(
                f"{home} is not empty and was not made by a replay (no {MARKER} file); "
                "refusing to delete it. Pass an output folder of its own."
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("made by coincast replay\n")
    return home


def write_home_config(base: Mapping[str, Any], *, policy: str, home: Path) -> Path:
    """Write ``<home>/config.json`` for ``policy``; returns its path."""
    path = Path(home) / CONFIG_NAME
    path.write_text(json.dumps(home_config(base, policy=policy, home=home), indent=2, default=str))
    return path


def check_home_locations(
    *, policy: str, home: Path, tracking_uri: str, warehouse_path: Path
) -> None:
    """Raise ``ConfigError`` when a loaded home config points outside its home.

    Environment variables override config files (``COINCAST_REGISTRY__TRACKING_URI``
    would point every policy at one registry): a replay refuses that.
    """
    root = Path(home).resolve()
    inside = [
        str(root) in tracking_uri if tracking_uri.startswith("sqlite:") else False,
        Path(warehouse_path).resolve().is_relative_to(root),
    ]
    if not all(inside):
        raise ConfigError(
            f"The {policy!r} replay home {root} loads tracking_uri={tracking_uri!r} and "
            f"warehouse {warehouse_path}; each policy needs its own registry and warehouse in "
            "its home. Unset COINCAST_HOME / COINCAST_REGISTRY__TRACKING_URI / "
            "COINCAST_REGISTRY__ARTIFACT_LOCATION for the replay."
        )
