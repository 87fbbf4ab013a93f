"""Mappings: how a person becomes an account in one kind of directory (mappings/*.toml).

``types`` holds the frozen, validated form the core uses; ``loader`` reads the TOML
(pydantic at the edge); ``templates`` renders ``{field}`` templates without eval.
"""

from connector.mapping.loader import MappingError, load_mapping
from connector.mapping.types import AccountMapping, AttributeRule, DisableRule, GroupRule

__all__ = [
    "AccountMapping",
    "AttributeRule",
    "DisableRule",
    "GroupRule",
    "MappingError",
    "load_mapping",
]
