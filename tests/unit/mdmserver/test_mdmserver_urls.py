"""URL building and id validation (MC-1, MC-3, GAP-21) and NanoMDM result parsing (GAP-9)."""

from __future__ import annotations

import json

import pytest

from nanocmd_core.mdmserver.result import (
    ids_with_errors,
    is_already_exists,
    micromdm_error,
    parse_api_result,
    truncate,
)
from nanocmd_core.mdmserver.urls import (
    chunked,
    dedupe,
    ids_path_segment,
    normalise_base_url,
    request_url,
    validate_ids,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://mdm.example/v1/enqueue", "https://mdm.example/v1/enqueue/"),
        ("https://mdm.example/v1/enqueue/", "https://mdm.example/v1/enqueue/"),
        ("https://mdm.example", "https://mdm.example/"),
        ("https://mdm.example/v1/enqueue?nopush=1", "https://mdm.example/v1/enqueue/?nopush=1"),
        ("https://mdm.example/v1/enqueue/?nopush=1#frag", "https://mdm.example/v1/enqueue/?nopush=1"),
        ("  http://h:9000/x  ", "http://h:9000/x/"),
    ],
)
def test_mc1_trailing_slash_goes_on_the_path_and_the_query_stays(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "mdm.example/v1/enqueue", "ftp://h/x", "http:///nohost"])
def test_base_url_must_be_absolute_http(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_base_url(bad)


def test_mc3_ids_joined_with_comma_as_last_path_segment() -> None:
    base = normalise_base_url("https://mdm.example/v1/enqueue")
    assert request_url(base, ["A", "B"]) == "https://mdm.example/v1/enqueue/A,B"


def test_gap21_query_string_on_base_url_is_kept_after_the_ids() -> None:
    base = normalise_base_url("https://mdm.example/v1/enqueue?nopush=1")
    assert request_url(base, ["A", "B"]) == "https://mdm.example/v1/enqueue/A,B?nopush=1"


def test_gap21_each_id_is_percent_escaped() -> None:
    segment = ids_path_segment(["a/b", "c?d", "e#f", "g:h", "i j", "k,l", "ü"])
    assert segment == "a%2Fb,c%3Fd,e%23f,g%3Ah,i%20j,k%2Cl,%C3%BC"
    # a ":" in the first id no longer turns it into a URL scheme (the Go client's url.Parse failure)
    assert request_url("https://h/v1/enqueue/", ["UDID:user"]) == "https://h/v1/enqueue/UDID%3Auser"


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_gap21_unaddressable_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_ids(["ok", bad], comma_splits=False)


def test_comma_in_id_rejected_only_where_the_server_splits_on_commas() -> None:
    with pytest.raises(ValueError, match="splits its URL path on commas"):
        validate_ids(["a,b"], comma_splits=True)
    validate_ids(["a,b"], comma_splits=False)


def test_a_bare_string_is_not_a_list_of_ids() -> None:
    with pytest.raises(TypeError):
        validate_ids("ABC", comma_splits=True)


def test_chunking_and_dedupe() -> None:
    ids = [f"id{i}" for i in range(65)]
    assert [len(c) for c in chunked(ids, 30)] == [30, 30, 5]
    assert [i for c in chunked(ids, 30) for i in c] == ids
    assert list(chunked([], 30)) == []
    assert dedupe(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    with pytest.raises(ValueError):
        list(chunked(ids, 0))


# --- NanoMDM APIResult ------------------------------------------------------------------------


def test_parse_full_nanomdm_api_result() -> None:
    body = json.dumps(
        {
            "status": {
                "A": {"push_result": "6E14E52F-7F07-42C7-8367-4D81441DC85F"},
                "B": {"command_error": "disk full", "push_error": "BadDeviceToken"},
            },
            "no_push": True,
            "command_uuid": "c7fc0872",
            "request_type": "ProfileList",
        }
    ).encode()
    result = parse_api_result(body)
    assert result is not None
    assert result.command_errors == {"B": "disk full"}
    assert result.push_errors == {"B": "BadDeviceToken"}
    assert result.no_push and result.command_uuid == "c7fc0872" and result.request_type == "ProfileList"
    assert not result.command_error and not result.push_error
    assert "B: command_error: disk full" in result.summary()


def test_parse_top_level_errors_and_empty_result() -> None:
    result = parse_api_result(b'{"command_error": "command already exists: X", "command_uuid": "X"}')
    assert result is not None and result.command_error == "command already exists: X"
    empty = parse_api_result(b"{}\n")
    assert empty is None  # not recognisably NanoMDM's (an empty APIResult carries no information)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Unauthorized\n",
        b"[1, 2]",
        b'{"status": "success", "push_notification_id": "x"}',  # MicroMDM push answer
        b'{"payload": {"udid": "A"}}',  # MicroMDM enqueue answer
        b"\xff\xfe",
    ],
)
def test_non_nanomdm_bodies_are_not_api_results(body: bytes) -> None:
    assert parse_api_result(body) is None


@pytest.mark.parametrize(
    "text",
    [
        "command already exists: 0a1b",  # NanoMDM file/KV stores
        "inserting command: Error 1062 (23000): Duplicate entry '0a1b' for key 'commands.PRIMARY'",  # MySQL
        'pq: duplicate key value violates unique constraint "commands_pkey"',  # PostgreSQL
    ],
)
def test_already_exists_recognised_for_every_nanomdm_backend(text: str) -> None:
    assert is_already_exists(text)


def test_other_errors_are_not_already_exists() -> None:
    assert not is_already_exists("decoding command: invalid command")


def test_per_id_errors_keyed_by_unknown_names_fail_every_id() -> None:
    ids = ["A", "B", "C"]
    assert ids_with_errors({"C": "x", "A": "y"}, ids) == ["A", "C"]
    assert ids_with_errors({}, ids) == []
    # NanoMDM's KV store keys per-id enqueue errors by command UUID: we cannot tell which ids failed
    assert ids_with_errors({"some-command-uuid": "x"}, ids) == ids


def test_micromdm_error_and_truncate() -> None:
    assert micromdm_error(b'{\n  "error": "invalid push token"\n}') == "invalid push token"
    assert micromdm_error(b"<html>") == ""
    long = truncate("x" * 2000 + "\n\n  y")
    assert len(long) == 500 and long.endswith("…")
    assert truncate("a\n  b\tc") == "a b c"
