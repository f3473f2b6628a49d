"""Durations and sizes: what people write, what they mean, and how defaults are shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1m30s", 90.0),
        ("1h15m", 4500.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_duration_units_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", 'expected a duration such as 10s, got "5"'),
        ("ten", 'expected a duration such as 10s, got "ten"'),
        ("-1s", 'expected a duration such as 10s, got "-1s"'),
        ("10 s", 'expected a duration such as 10s, got "10 s"'),
        ("10sec", 'expected a duration such as 10s, got "10sec"'),
        ("", 'expected a duration such as 10s, got ""'),
        ("30s1m", 'expected a duration such as 10s (each unit once, largest first), got "30s1m"'),
        ("1m1m", 'expected a duration such as 10s (each unit once, largest first), got "1m1m"'),
    ],
)
def test_bad_durations_are_refused_with_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("512MiB", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("10MB", 10_000_000),
        ("1kb", 1000),
        ("100B", 100),
        ("1.5KiB", 1536),
        ("64 KiB", 65536),
        ("1024", 1024),
        (4096, 4096),
    ],
)
def test_sizes_are_read(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("big", 'expected a size such as 64MiB, got "big"'),
        ("10 parsecs", 'expected a size such as 64MiB, got "10 parsecs"'),
        ("-5MiB", 'expected a size such as 64MiB, got "-5MiB"'),
        (-5, "expected a size such as 64MiB, got -5"),
    ],
)
def test_bad_sizes_are_refused_with_the_text(text: str | int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (0, "0s"), (90, "1m30s"), (604800, "7d"), (60, "1m"), (1.5, "1s500ms")],
)
def test_durations_are_shown_in_the_largest_units(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (256 * 1024**2, "256MiB"),
        (262144, "256KiB"),
        (16 * 1024**2, "16MiB"),
        (10_000_000, "10MB"),
        (1000, "1KB"),
        (1023, "1023B"),
        (0, "0B"),
    ],
)
def test_sizes_are_shown_in_the_largest_whole_unit(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=10**11))
def test_formatted_duration_reads_back(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@given(st.integers(min_value=0, max_value=2**50))
def test_formatted_size_reads_back(size: int) -> None:
    assert parse_size(format_size(size)) == size
