"""m3curate's data contract: versioned Arrow schemas, the row parts every stage builds rows
with (``schemas.rows``), and the validator both sides call. The row-stage framework
(``schemas.stage``) imports Beam and is not imported here."""

from schemas.arrow import PAIRS, PARALLEL, REJECTS, SCHEMA_VERSION, SCHEMAS
from schemas.rows import TEXT_KINDS, UNDETERMINED, back_translated_from, lang_key
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
    "lang_key",
    "validate_rows",
    "validate_table",
]
