"""Formats and bounds of the values clients send, defined once for the bodies, the path and
query parameters and the CLI.

Patterns are written `^...$` for the JSON Schema documents (ECMA-262, where `$` is the end of
the input). pydantic checks `pattern=` with its Rust regex engine, where `$` is the end of
the text too; Python code matching these patterns must use `re.fullmatch`, since `re`'s `$`
also matches before a final newline.
"""

from typing import Annotated

from pydantic import Field

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
TENANT_ID_MAX_LENGTH = 128
# Codes are ASCII letters, digits, hyphens and underscores (the spec's custom_code rule), so
# no case folding of another script can turn one code into another.
CODE_PATTERN = r"^[A-Za-z0-9_-]+$"
CODE_PREFIX_PATTERN = r"^[A-Za-z0-9_-]*$"
CODE_MAX_LENGTH = 255
# The random part of a code (the spec: 4 to 32).
CODE_LENGTH_MIN, CODE_LENGTH_MAX = 4, 32
# A code pattern: code characters as literals plus the placeholders # (digit), ? (letter) and
# * (any character of the charset); one character per character of the code.
CODE_TEMPLATE_PATTERN = r"^[A-Za-z0-9_#?*-]+$"
PLACEHOLDERS_MAX = CODE_LENGTH_MAX
# Ids the service generated (UUIDs) in paths and references.
ID_MAX_LENGTH = 64
# Ids of other systems: users, achievements, streaks, leaderboards.
EXTERNAL_ID_MAX_LENGTH = 255
NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 2000
# A client's free-form `metadata` (redeem, reserve): its compact JSON text, in UTF-8 bytes.
METADATA_MAX_BYTES = 4096
# Why a redemption was rolled back: free text for people and the event's consumers.
REASON_MAX_LENGTH = 500
# How long a hold (reservation) lasts, in seconds.
HOLD_TTL_DEFAULT, HOLD_TTL_MIN, HOLD_TTL_MAX = 300, 1, 3600
# Integers a client sends fit in 32 bits (past 64 bits MongoDB cannot store them: a 500).
INT_MAX = 2**31 - 1

ExternalId = Annotated[str, Field(min_length=1, max_length=EXTERNAL_ID_MAX_LENGTH)]
# An integer whose lower bound a rule of the spec's table enforces, in the spec's wording
# (phoenix_coupons.domain.config_rules): pydantic refuses only what could not be stored, and
# the schema documents the whole range.
Count = Annotated[int, Field(le=INT_MAX, json_schema_extra={"minimum": 1})]
