"""The Management API's OpenAPI document: the static part (`openapi.json`) completed from the
registry of destinations (the vendor names, and each vendor's config schemas)."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
from typing import Any

from gateway import destinations

# How each integration schema refers to a destination's config schema.
_ROLES = {"Integration": "shown", "IntegrationCreate": "create", "IntegrationPatch": "patch"}
_SUFFIX = {"shown": "", "create": "Create", "patch": "Patch"}


@functools.cache
def document_bytes() -> bytes:
    """The whole document as served (built once per process, off the event loop)."""
    return json.dumps(document(), ensure_ascii=False).encode()


def document() -> dict[str, Any]:
    raw = importlib.resources.files("gateway").joinpath("admin/openapi.json").read_bytes()
    doc: dict[str, Any] = json.loads(raw)
    schemas = doc["components"]["schemas"]
    vendors = list(destinations.vendors())
    for schema_name, role in _ROLES.items():
        properties = schemas[schema_name]["properties"]
        refs = []
        for destination in destinations.REGISTRY.values():
            name = f"{destination.schema_name}Config{_SUFFIX[role]}"
            schemas[name] = copy.deepcopy(dict(destination.config_schemas[role]))
            refs.append({"$ref": f"#/components/schemas/{name}"})
        properties["config"] = {
            "description": "the vendor's config (each destination's schema)",
            "anyOf": refs,
        }
        properties["vendor"] = {"enum": vendors}
    schemas["IntegrationCreate"]["properties"]["vendor"]["default"] = destinations.DEFAULT_VENDOR
    return doc
