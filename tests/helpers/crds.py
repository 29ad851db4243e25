"""Custom resources checked against their operator's own CRD schemas, strictly.

A suite vendors a CRD's ``openAPIV3Schema`` as JSON (``tests/deploy/schemas/``) and validates
its manifests with ``crd_validator``: no cluster is needed, and a misspelt key fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema


def prepare(schema: Any, *, strictly: bool) -> Any:
    """A copy of a CRD schema that Python's jsonschema reads; ``strictly``, with no extra keys.

    Strict: every object with ``properties`` takes no other key. Kubernetes silently prunes the
    unknown fields of a custom resource, so a misspelt key would vanish on apply instead of
    failing; here it fails. Maps (an explicit additionalProperties) and objects marked
    x-kubernetes-preserve-unknown-fields keep their own rule.
    """
    if isinstance(schema, list):
        return [prepare(item, strictly=strictly) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {
        key: prepare(value, strictly=strictly)
        for key, value in schema.items()
        if key != "properties"
    }
    if "properties" in schema:
        copy["properties"] = {
            name: prepare(field, strictly=strictly) for name, field in schema["properties"].items()
        }
        open_ended = "additionalProperties" in schema or schema.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if strictly and not open_ended:
            copy["additionalProperties"] = False
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        # Go's regexp takes flags anywhere; Python's only at the start.
        copy["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
    return copy


def crd_validator(schema_file: Path, *, strictly: bool = True) -> jsonschema.protocols.Validator:
    """A validator for ``schema_file``, a CRD's openAPIV3Schema as JSON (a Draft 4 dialect)."""
    schema = prepare(json.loads(schema_file.read_text()), strictly=strictly)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def schema_errors(validator: jsonschema.protocols.Validator, resource: Any) -> list[str]:
    """Each error as ``path: message``, sorted; empty when ``resource`` is valid."""
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(resource)
    )
