"""Building MDM-server request URLs from a base URL and enrollment ids (MC-1, MC-3; GAP-21 fixed).

The Go NanoCMD resolves the comma-joined ids as a relative reference against the base URL. That loses
a query string on the base URL (e.g. NanoMDM's ``?nopush=1``) and breaks on ids containing ``?``,
``#`` or a ``:`` in the first id. Here the ids become the last *path* segment, each id
percent-escaped on its own, and the base URL's query is kept after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ID_SEPARATOR = ","


def normalise_base_url(url: str) -> str:
    """Return ``url`` with a trailing ``/`` on its path (MC-1), keeping any query string.

    The ``/`` goes on the path, not on the end of the string, so ``.../enqueue?nopush=1`` becomes
    ``.../enqueue/?nopush=1``. A fragment is dropped: it is never sent to a server anyway.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"MDM server URL must be an absolute http(s) URL, got {url!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def validate_ids(ids: Sequence[str], *, comma_splits: bool) -> None:
    """Reject ids that cannot be addressed as a URL path segment, before anything is sent.

    - empty ids (GAP-21): they would address the collection, not an enrollment;
    - ``.`` and ``..``: URL libraries and servers normalise them away as dot segments;
    - ids containing ``,`` when the server splits the path on commas (NanoMDM): NanoMDM splits the
      *decoded* path, so even a percent-escaped comma would enqueue to two wrong enrollment ids.
    """
    if isinstance(ids, str):  # a bare string is a Sequence[str] too; catch the easy mistake
        raise TypeError("ids must be a sequence of enrollment ids, not a single string")
    for enrollment_id in ids:
        if not isinstance(enrollment_id, str):
            raise TypeError(f"enrollment id must be a string, got {type(enrollment_id).__name__}")
        if enrollment_id == "":
            raise ValueError("empty enrollment id")
        if enrollment_id in (".", ".."):
            raise ValueError(f"enrollment id {enrollment_id!r} cannot be used as a URL path segment")
        if comma_splits and ID_SEPARATOR in enrollment_id:
            raise ValueError(
                f"enrollment id {enrollment_id!r} contains ','; NanoMDM splits its URL path on commas "
                "(after decoding), so it cannot be addressed"
            )


def ids_path_segment(ids: Sequence[str]) -> str:
    """Each id percent-escaped (nothing is safe, so ``/ ? # : ,`` and spaces are all escaped), then
    joined with a literal ``,``: the separator NanoMDM splits on."""
    return ID_SEPARATOR.join(quote(enrollment_id, safe="") for enrollment_id in ids)


def request_url(base_url: str, ids: Sequence[str]) -> str:
    """``base_url`` (already normalised) with the ids appended as its last path segment, query kept."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + ids_path_segment(ids), parts.query, ""))


def chunked(items: Sequence[str], size: int) -> Iterator[list[str]]:
    """Consecutive chunks of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def dedupe(ids: Sequence[str]) -> list[str]:
    """Ids with duplicates removed, first-seen order kept (GAP-15, GAP-26)."""
    return list(dict.fromkeys(ids))


def with_query(base_url: str, name: str, value: str) -> str:
    """``base_url`` with ``name=value`` in its query (a query the admin configured is kept)."""
    parts = urlsplit(base_url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode([*pairs, (name, value)]), ""))
