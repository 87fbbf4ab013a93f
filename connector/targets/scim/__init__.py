"""The SCIM 2.0 target (scim2-client is used here and nowhere else)."""

from connector.targets.scim.adapter import ScimTarget, check_scope_filter

__all__ = ["ScimTarget", "check_scope_filter"]
