"""Key files for batch signatures: read strictly, and errors that never show a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.device_keys import KeyFileError, load_device_key, load_device_keys

KEY_A = "11" * 32
KEY_B = "ab" * 16


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    return path


def test_the_hub_file_maps_devices_to_keys(tmp_path: Path) -> None:
    path = write(tmp_path, f"# fleet keys\npi-a {KEY_A}\n\npi-b {KEY_B}  # spare\n")
    assert load_device_keys(path) == {"pi-a": bytes.fromhex(KEY_A), "pi-b": bytes.fromhex(KEY_B)}


def test_a_device_file_holds_one_key(tmp_path: Path) -> None:
    assert load_device_key(write(tmp_path, f"{KEY_A}\n")) == bytes.fromhex(KEY_A)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"pi-a {KEY_A}\npi-a {KEY_B}\n", "keys:2: device 'pi-a' is listed twice"),
        ("pi-a\n", "keys:1: expected `<device id> <hex key>`"),
        ("pi-a 0123\n", "keys:1: the key has 2 bytes, at least 16 are needed"),
        ("pi-a xyz0\n", "keys:1: the key is not an even number of hex digits"),
        ("pi-a 123\n", "keys:1: the key is not an even number of hex digits"),
    ],
)
def test_bad_hub_files_name_the_line_and_never_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_device_keys(write(tmp_path, text))
    assert str(caught.value).endswith(message)
    assert KEY_A not in str(caught.value) and KEY_B not in str(caught.value)


def test_bad_device_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="expected one hex key, found 2 lines"):
        load_device_key(write(tmp_path, f"{KEY_A}\n{KEY_B}\n"))
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_device_key(tmp_path / "missing")
