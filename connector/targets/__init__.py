"""Targets: the directories misync writes to. One adapter per protocol, one port for all."""

from connector.targets.base import (
    PermanentTargetError,
    Target,
    TargetError,
    TargetNotEffectiveError,
    TargetNotRespondingError,
    TargetUnavailableError,
    TemporaryTargetError,
)

__all__ = [
    "PermanentTargetError",
    "Target",
    "TargetError",
    "TargetNotEffectiveError",
    "TargetNotRespondingError",
    "TargetUnavailableError",
    "TemporaryTargetError",
]
