"""Building blocks for the doors' own OpenAPI descriptions (gathered by ``tracking.openapi``)."""

from __future__ import annotations

TAG = "Ingestion doors"


def object_schema(properties: dict, required: tuple = ()) -> dict:
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def query(name: str, description: str, *, required: bool = False, **schema) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def operation(operation_id: str, summary: str, description: str, **rest) -> dict:
    return {
        "operationId": operation_id,
        "tags": [TAG],
        "summary": summary,
        "description": description,
        "security": [],
        **rest,
    }


ERROR = {
    "description": "Refused; the body names the field at fault.",
    "content": {
        "application/json": {
            "schema": object_schema(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                }
            )
        }
    },
}
STRING = {"type": "string"}
OBJECT = {"type": "object", "additionalProperties": True}
