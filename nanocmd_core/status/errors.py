"""What the status and history reads raise; the messages are what API callers see."""

from __future__ import annotations


class InvalidPageToken(ValueError):
    """A ``next`` token that this service did not hand out, or one for another query: a 400."""
