"""The SCIM 2.0 target (scim2-client is used here and nowhere else)."""

from connector.targets.scim.adapter import ScimTarget

__all__ = ["ScimTarget"]
