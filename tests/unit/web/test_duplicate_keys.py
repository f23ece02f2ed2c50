"""Duplicate JSON keys are found by counting keys, and agree with a full parse that checks every object."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qortex.web.routing import refuse_duplicate_keys


def refused(raw: str) -> str | None:
    """The error refuse_duplicate_keys raises for `raw`, or None when it accepts it."""
    body = raw.encode()
    try:
        refuse_duplicate_keys(body, orjson.loads(body))
    except json.JSONDecodeError as error:
        return error.msg
    return None


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": 1, "a": 2}',
        '{"a": 1, "\\u0061": 2}',  # the same key, spelled two ways
        '{"": 1, "": 2}',
        '{"a" : 1, "b"\n:2, "a"\t: 3}',
        '[{"ok": 1}, {"x": {"y": 1, "y": 1}}]',
        '{"v": "\\"", "v": 1}',
    ],
)
def test_a_repeated_key_is_refused_and_named(raw: str) -> None:
    message = refused(raw)
    assert message is not None and message.startswith("duplicate key")


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": {"a": 1}}',
        '[{"a": 1}, {"a": 1}]',
        '{"a": "\\":", "b": "x\\\\", "c": "\\\\\\":"}',  # quotes, colons and backslashes inside values
        '{"a": ["b", "c:"], "d": "e"}',
        '"a: b"',
        "[]",
    ],
)
def test_equal_keys_in_different_objects_and_colons_in_strings_are_accepted(raw: str) -> None:
    assert refused(raw) is None


def test_objects_nested_deeper_than_orjson_writes_are_still_checked() -> None:
    depth = 300  # orjson reads 1,024 levels but writes 254
    assert refused("[" * depth + '{"a": 1}' + "]" * depth) is None
    assert refused("[" * depth + '{"a": 1, "a": 2}' + "]" * depth) == "duplicate key 'a'"


keys = st.sampled_from(["a", "b", "a:", '"', "\\", "é", ""])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), keys)


def pairs_of(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(st.tuples(keys, values), max_size=4).map(lambda pairs: ("object", pairs))


json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), pairs_of(inner)), max_leaves=20
)


def write(value: Any, *, ascii_only: bool, space: str) -> str:
    """JSON text that may repeat keys, which json.dumps of a dict never does."""
    if isinstance(value, tuple):
        members = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}{space}:{space}{write(v, ascii_only=ascii_only, space=space)}"
            for k, v in value[1]
        )
        return "{" + f",{space}".join(members) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(write(v, ascii_only=ascii_only, space=space) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


@given(json_values, st.booleans(), st.sampled_from(["", " ", "\n\t "]))
def test_agrees_with_a_parser_that_checks_every_object(value: Any, ascii_only: bool, space: str) -> None:
    raw = write(value, ascii_only=ascii_only, space=space)

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("repeated")
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=no_repeats)
        expected = False
    except ValueError:
        expected = True
    assert (refused(raw) is not None) == expected
