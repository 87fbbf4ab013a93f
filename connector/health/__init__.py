"""Health: what `misync status` prints and the optional Prometheus endpoint serves, both
read from the state store (never from the directory), so they answer while a run holds
the state lock and cost nothing at scale."""

from connector.health.status import collect_status, render_status

__all__ = ["collect_status", "render_status"]
