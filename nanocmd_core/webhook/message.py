"""The queued webhook's format, shared by the intake that writes it and the events function that
reads it: a module of its own so the events function does not load the intake to read three names."""

from __future__ import annotations

BLOB_POINTER = "nanocmd_blob"
"""The key of a message body that points at a blob (a webhook too large for SQS)."""
COMMAND_UUID_ATTRIBUTE = "command_uuid"
ENROLLMENT_ID_ATTRIBUTE = "enrollment_id"
"""Message attributes of a command report: its webhook ``command_uuid`` and enrollment id (the
message group id is the enrollment id too, but cut to SQS's 128 characters)."""
