"""The champion timeline of a replay: each decision and alias move, on the replay clock.

Every retrain writes one row to the ``promotions`` audit table (promote,
reject or keep) and every rollback another; the replay notes which clock step
wrote which rows and turns them into events:

``first``, ``refresh``, ``replace``, ``latest`` (a promotion of that kind),
``reject`` (a challenger the gate turned down; ``attempted`` says which kind),
``keep`` / ``no_new_data`` (nothing registered), ``rollback`` (the monitor
moved the champion back), and ``frozen`` (a retrain the ``frozen`` policy did
not run because it keeps its first champion).

The kind comes from the retrain's returned decision (``decision["kind"]``)
when it has one, else from the audit row (its metrics' ``kind``, its action).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

#: Columns of a timeline frame.
TIMELINE_COLUMNS = [
    "policy",
    "at",
    "step",
    "event",
    "attempted",
    "champion_before",
    "champion_after",
    "challenger_version",
    "reason",
]
PROMOTION_KINDS = ("first", "refresh", "replace", "latest")
#: Events that move the champion.
MOVES = (*PROMOTION_KINDS, "rollback")
_REJECTED = re.compile(r"^no (first champion|refresh|replace)\b")


def classify_audit_row(row: Mapping[str, Any], decision_kind: str | None = None) -> tuple[str, str]:
    """``(event, attempted kind)`` of one audit row (see the module doc).

    >>> classify_audit_row({"action": "promote", "champion_before": None})
    ('first', 'first')
    >>> classify_audit_row({"action": "reject", "champion_before": "1"}, "refresh")
    ('reject', 'refresh')
    >>> classify_audit_row({"action": "reject", "reason": "no refresh: worse"}, "keep")
    ('reject', 'refresh')
    """
    action = str(row.get("action") or "")
    kind = decision_kind or _metrics_kind(row.get("metrics_json")) or ""
    if action == "rollback":
        return "rollback", "rollback"
    if action == "promote":
        if kind not in PROMOTION_KINDS:
            kind = "first" if _missing(row.get("champion_before")) else "replace"
        return kind, kind
    if action == "reject":
        if kind not in PROMOTION_KINDS:
            kind = _attempted(str(row.get("reason") or ""))
        if kind not in PROMOTION_KINDS:
            kind = "first" if _missing(row.get("champion_before")) else "replace"
        return "reject", kind
    if action == "keep":
        event = "no_new_data" if kind == "no_new_data" else "keep"
        return event, event
    return action or "unknown", kind


def step_events(
    *,
    policy: str,
    at: pd.Timestamp,
    step: str,
    audit_rows: pd.DataFrame,
    decision_kind: str | None = None,
) -> pd.DataFrame:
    """Timeline rows for the audit rows one step (retrain or monitor) wrote, oldest first."""
    rows = []
    ordered = audit_rows.sort_values("created_at") if not audit_rows.empty else audit_rows
    for record in ordered.to_dict(orient="records"):
        # the decision's kind describes the retrain's own decision, not a repair or rollback
        own = decision_kind if record.get("action") in ("promote", "reject", "keep") else None
        event, attempted = classify_audit_row(record, own)
        rows.append(
            {
                "policy": policy,
                "at": at,
                "step": step,
                "event": event,
                "attempted": attempted,
                "champion_before": _text(record.get("champion_before")),
                "champion_after": _text(record.get("champion_after")),
                "challenger_version": _text(record.get("challenger_version")),
                "reason": str(record.get("reason") or ""),
            }
        )
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def frozen_event(*, at: pd.Timestamp, champion: str | None) -> pd.DataFrame:
    """The timeline row of a retrain the ``frozen`` policy skipped."""
    return pd.DataFrame(
        [
            {
                "policy": "frozen",
                "at": at,
                "step": "retrain",
                "event": "frozen",
                "attempted": "",
                "champion_before": champion,
                "champion_after": champion,
                "challenger_version": None,
                "reason": f"not run: the frozen policy keeps its first champion v{champion}",
            }
        ],
        columns=TIMELINE_COLUMNS,
    )


def event_counts(timeline: pd.DataFrame, policies: Sequence[str]) -> pd.DataFrame:
    """Per policy: how many of each event (columns: policy, then one per event seen)."""
    if timeline.empty:
        return pd.DataFrame({"policy": list(policies)})
    counts = timeline.pivot_table(index="policy", columns="event", aggfunc="size", fill_value=0)
    counts = counts.reindex(list(policies), fill_value=0)
    return counts.reset_index().rename_axis(columns=None)


def _attempted(reason: str) -> str:
    """The kind a rejection reason names (the gate writes 'no refresh: ...', 'no replace: ...')."""
    found = _REJECTED.match(reason)
    return {"first champion": "first"}.get(found.group(1), found.group(1)) if found else ""


def _metrics_kind(metrics_json: Any) -> str | None:
    if not metrics_json or not isinstance(metrics_json, str):
        return None
    try:
        kind = json.loads(metrics_json).get("kind")
    except (ValueError, AttributeError):
        return None
    return str(kind) if kind else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _text(value: Any) -> str | None:
    return None if _missing(value) else str(value)
