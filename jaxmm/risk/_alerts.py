"""Alerts: severities, de-duplication that never hides an escalation, acknowledgement, handlers.

De-duplication rule: an alert is suppressed iff an alert with the same ``(type, severity)`` was
*delivered* within the last ``window`` seconds. The key includes the severity, so a higher
severity is never suppressed by a lower one (the original's bug: a Warning silenced a
Critical). Suppressed alerts are counted per key (``suppressed``) and never reach handlers.
Acknowledging an alert marks it handled; it does not change de-duplication.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Severity",
    "Alert",
    "AlertManager",
    "LogHandler",
    "CallbackHandler",
    "CollectingHandler",
]


class Severity(enum.IntEnum):
    """Alert severity, ordered: INFO < WARNING < CRITICAL < EMERGENCY."""

    INFO = 10
    WARNING = 20
    CRITICAL = 30
    EMERGENCY = 40


@dataclass
class Alert:
    """One delivered alert (``acknowledged`` flips through :meth:`AlertManager.acknowledge`)."""

    id: int
    type: str
    severity: Severity
    message: str
    ts: float
    acknowledged: bool = False
    data: dict = field(default_factory=dict)


class LogHandler:
    """Handler that logs alerts through :mod:`logging` at the matching level."""

    _LEVEL = {
        Severity.INFO: logging.INFO,
        Severity.WARNING: logging.WARNING,
        Severity.CRITICAL: logging.CRITICAL,
        Severity.EMERGENCY: logging.CRITICAL,
    }

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger("jaxmm.risk.alerts")

    def __call__(self, alert: Alert) -> None:
        self.logger.log(
            self._LEVEL[alert.severity],
            "[%s] %s: %s",
            alert.severity.name,
            alert.type,
            alert.message,
        )


class CallbackHandler:
    """Handler that calls ``fn(alert)``."""

    def __init__(self, fn: Callable[[Alert], None]):
        self.fn = fn

    def __call__(self, alert: Alert) -> None:
        self.fn(alert)


class CollectingHandler:
    """Handler that keeps every delivered alert in ``alerts`` (tests, dashboards)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def __call__(self, alert: Alert) -> None:
        self.alerts.append(alert)


class AlertManager:
    """Raise, de-duplicate, deliver and acknowledge alerts.

    Args:
        window: de-duplication window in seconds (>= 0; 0 disables de-duplication).
        handlers: callables receiving each delivered :class:`Alert`. A handler that raises is
            logged and does not stop the other handlers.

    Example:
        >>> sink = CollectingHandler()
        >>> am = AlertManager(window=60.0, handlers=[sink])
        >>> _ = am.raise_alert("delta", Severity.WARNING, "delta 80%", ts=0.0)
        >>> am.raise_alert("delta", Severity.WARNING, "delta 81%", ts=5.0) is None
        True
        >>> _ = am.raise_alert("delta", Severity.CRITICAL, "delta 100%", ts=6.0)
        >>> [a.severity.name for a in sink.alerts]
        ['WARNING', 'CRITICAL']
    """

    def __init__(self, window: float = 60.0, handlers: list[Callable[[Alert], None]] | None = None):
        w = float(window)
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"window: must be finite and >= 0, got {window!r}")
        self.window = w
        self.handlers = list(handlers or [])
        self._last: dict[tuple[str, Severity], float] = {}
        self._alerts: dict[int, Alert] = {}
        self._ids = itertools.count(1)
        self.suppressed: dict[tuple[str, Severity], int] = {}

    def raise_alert(
        self, type: str, severity: Severity, message: str, ts: float, data: dict | None = None
    ) -> Alert | None:
        """Deliver an alert, or return ``None`` if it is a duplicate within the window."""
        sev = Severity(severity)
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError(f"ts: must be finite, got {ts!r}")
        key = (type, sev)
        last = self._last.get(key)
        if last is not None and self.window > 0 and ts - last < self.window:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return None
        self._last[key] = ts
        alert = Alert(next(self._ids), type, sev, message, ts, data=dict(data or {}))
        self._alerts[alert.id] = alert
        for h in self.handlers:
            try:
                h(alert)
            except Exception:  # a broken handler must not hide the alert from the others
                logging.getLogger("jaxmm.risk.alerts").exception("alert handler failed")
        return alert

    def acknowledge(self, alert_id: int) -> Alert:
        """Mark an alert acknowledged; ``ValueError`` for an unknown id."""
        try:
            alert = self._alerts[alert_id]
        except KeyError:
            raise ValueError(f"alert_id: unknown alert {alert_id!r}") from None
        alert.acknowledged = True
        return alert

    def unacknowledged(self, min_severity: Severity = Severity.INFO) -> list[Alert]:
        """Delivered, unacknowledged alerts at or above ``min_severity``, oldest first."""
        return [
            a for a in self._alerts.values() if not a.acknowledged and a.severity >= min_severity
        ]
