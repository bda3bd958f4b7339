"""MLflow tracking, the registered pyfunc pipeline, aliases and the promotion audit.

The only part of ``ml_core`` that imports mlflow. Every entry point takes the
tracking URI explicitly; nothing is configured at import time.
"""

from ml_core.registry.moves import read_moves, repair_unfinished, unfinished_moves
from ml_core.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Decision,
    apply_decision,
    read_audit,
    rollback,
)
from ml_core.registry.store import (
    ModelVersionInfo,
    RegistryStore,
    log_pipeline,
    pinned_requirements,
)
from ml_core.registry.tracking import TrackingContext, mlflow_uri_scope

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "Decision",
    "ModelVersionInfo",
    "RegistryStore",
    "TrackingContext",
    "apply_decision",
    "log_pipeline",
    "mlflow_uri_scope",
    "pinned_requirements",
    "read_audit",
    "read_moves",
    "repair_unfinished",
    "rollback",
    "unfinished_moves",
]
