"""Alerts: the one small port through which runs tell people that something needs them.

Runs (connector.runs) raise an ``Alert`` for every event a person must act on: a missed
or near deactivation deadline, a held action (guard trip, feed hold, quarantine), a failed
or refused run. Sinks (the log, email, a webhook) implement ``AlertSink``; deduplication
and reminders live in front of the sinks, never in the runs: the ``AlertManager``
(``connector.alerts.manager``, built by ``build_alert_sink``) is the sink runs are given.
"""

from connector.alerts.port import (
    Alert,
    AlertSink,
    FeedAwareSink,
    LogAlertSink,
    RunAwareSink,
    Severity,
)

__all__ = ["Alert", "AlertSink", "FeedAwareSink", "LogAlertSink", "RunAwareSink", "Severity"]
