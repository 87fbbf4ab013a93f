"""The daemon (``misync run``): schedules the runs of ``connector.runs`` with APScheduler
3.x and speaks systemd's notify protocol. APScheduler is imported nowhere else."""

from connector.daemon.notify import SystemdNotifier
from connector.daemon.service import Daemon, check_schedule
from connector.daemon.watch import FeedWatcher

__all__ = ["Daemon", "FeedWatcher", "SystemdNotifier", "check_schedule"]
