"""Window definitions and PairsConfig: parsed at construction, bad values named in the message."""

from __future__ import annotations

import pytest

from lensflow.errors import StreamError
from lensflow.stream.config import PairsConfig
from lensflow.stream.windows import (
    SessionWindows,
    TumblingWindows,
    format_duration,
    parse_duration,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2s", 2000),
        ("500ms", 500),
        ("1.5s", 1500),
        ("1m", 60_000),
        ("1h", 3_600_000),
        (" 3 s ", 3000),
    ],
)
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["2", "two seconds", "-1s", "1.0005s", "5d", ""])
def test_parse_duration_rejects_with_the_bad_value(text):
    with pytest.raises(StreamError, match="bad duration") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)


def test_zero_duration_only_where_allowed():
    with pytest.raises(StreamError, match="longer than 0"):
        parse_duration("0s")
    assert parse_duration("0s", allow_zero=True) == 0


def test_format_duration_round_trips():
    for ms in (1, 500, 1500, 2000, 5000, 60_000, 90_000, 3_600_000):
        assert parse_duration(format_duration(ms)) == ms


def test_parse_window():
    assert parse_window("session:2s") == SessionWindows(2000)
    assert parse_window("tumbling:5s") == TumblingWindows(5000)
    assert parse_window("TUMBLING:500ms") == TumblingWindows(500)
    assert str(parse_window("tumbling:5000ms")) == "tumbling:5s"


def test_tumbling_windows_align_to_the_epoch():
    w = TumblingWindows(5000)
    assert w.start_of(1_700_000_004_999) == 1_700_000_000_000
    assert w.start_of(1_700_000_005_000) == 1_700_000_005_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sesion:2s", "did you mean 'session'"),
        ("hopping:5s", "must be 'session' or 'tumbling'"),
        ("tumbling", "give a duration after the colon"),
        ("tumbling:", "give a duration after the colon"),
        ("tumbling:5", "the tumbling window size must be a number with a unit"),
        ("session:0s", "the session gap must be .* greater than 0"),
    ],
)
def test_bad_windows_show_the_value(text, expected):
    with pytest.raises(StreamError, match=expected) as e:
        parse_window(text)
    assert repr(text) in str(e.value)


def test_window_definitions_validate_directly():
    with pytest.raises(StreamError, match="-5"):
        TumblingWindows(-5)
    with pytest.raises(StreamError, match="0"):
        SessionWindows(0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"window": "tumbing:5s"}, "did you mean 'tumbling'"),
        ({"grace": "2"}, "--grace"),
        ({"min_count": 0}, "--min-count must be >= 1, got 0"),
        ({"min_count": 2.5}, "whole number, got 2.5"),
        ({"min_probability": 150}, "0..100.*150"),
        ({"min_probability": -1}, "-1"),
        ({"blank": ("",)}, "--blank"),
        ({"topic": "socks/#"}, "wildcards"),
        ({"qos": 3}, "--qos"),
        ({"view": "localhost"}, "HOST:PORT"),
    ],
)
def test_config_rejects_bad_values(kwargs, expected):
    with pytest.raises(StreamError, match=expected):
        PairsConfig(**kwargs)


def test_config_defaults_and_engine_options():
    c = PairsConfig()
    assert c.windows == SessionWindows(2000)
    assert c.grace_ms == 2000
    assert c.engine_options() == {
        "window": "session:2s",
        "min_count": 4,
        "min_probability": 0.0,
        "blank": ["Blank"],
        "grace_ms": 2000,
    }
    assert PairsConfig(blank="Empty").blank == ("Empty",)
    assert PairsConfig(view=":8765").view_address == ("127.0.0.1", 8765)
