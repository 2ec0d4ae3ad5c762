"""JSON logs carry each ``key=value`` of a message as a key of its own (issue 13)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind.logs import JSONFormatter, KeyValueFormatter, split_fields


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("medchaind.node.node", logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize(("message", "text", "fields"), [
    ("node ready ipc=/tmp/x.ipc height=3 peer_id=12D3Koo", "node ready",
     {"ipc": "/tmp/x.ipc", "height": 3, "peer_id": "12D3Koo"}),
    ("plain text, no fields", "plain text, no fields", {}),
    ('refused reason="two words" code=bad', "refused", {"reason": "two words", "code": "bad"}),
    ("x msg=shadow level=-2", "x", {"field_msg": "shadow", "field_level": -2}),
    ("big n=12345678901234567890", "big", {"n": "12345678901234567890"}),  # beyond int64: kept as text
])
def test_split_fields(message: str, text: str, fields: dict[str, object]) -> None:
    assert split_fields(message) == (text, fields)


def test_json_lines_are_queryable_by_field() -> None:
    doc = json.loads(JSONFormatter().format(record("node ready height=%d peer_id=%s", 7, "12D3")))
    assert (doc["msg"], doc["height"], doc["peer_id"], doc["level"]) == ("node ready", 7, "12D3", "info")
    kv = KeyValueFormatter().format(record("node ready height=%d", 7))
    assert 'msg="node ready height=7"' in kv


@given(st.text(max_size=200))
def test_any_message_formats_as_one_json_object(message: str) -> None:
    line = JSONFormatter().format(record("%s", message))
    assert "\n" not in line
    doc = json.loads(line)
    assert {"ts", "level", "logger", "msg"} <= set(doc)
