"""m3curate's data contract: versioned Arrow schemas and the validator both sides call."""

from schemas.arrow import (
    PAIRS,
    PARALLEL,
    REJECTS,
    SCHEMA_VERSION,
    SCHEMAS,
    TEXT_KINDS,
    UNDETERMINED,
)
from schemas.texts import back_translated_from
from schemas.validate import SchemaError, check_version, validate_rows, validate_table

__all__ = [
    "PAIRS",
    "PARALLEL",
    "REJECTS",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "TEXT_KINDS",
    "UNDETERMINED",
    "SchemaError",
    "back_translated_from",
    "check_version",
    "validate_rows",
    "validate_table",
]
