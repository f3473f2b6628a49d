"""Config problems, collected rather than raised one at a time.

A user fixing a config file wants every mistake in one run, each on its own
line with file, line and key path, so validation records `ConfigIssue`s and
raises a single `ConfigError` at the end.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class IssueKind(StrEnum):
    """What went wrong, so tools and tests can tell problems apart."""

    UNKNOWN_KEY = "UnknownKey"
    MISSING = "Missing"
    WRONG_TYPE = "WrongType"
    OUT_OF_RANGE = "OutOfRange"
    CONFLICT = "Conflict"
    BAD_REFERENCE = "BadReference"
    SYNTAX = "Syntax"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem at one key path; `line` is 1-based, None when unknown."""

    path: str
    message: str
    line: int | None
    kind: str

    def format(self, source: str) -> str:
        """Render as `<source>:<line>: <path>: <message>`, leaving out what is unknown."""
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class Problem(NamedTuple):
    """A problem found by a `check()` hook: a path relative to the checked object."""

    path: str
    message: str
    kind: str = IssueKind.CONFLICT


class ConfigError(Exception):
    """A config file was refused; `str()` gives one line per issue."""

    def __init__(self, issues: Iterable[ConfigIssue], source: str) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(issue.format(self.source) for issue in self.issues)


def join_key(base: str, key: str) -> str:
    """The path of mapping entry `key` under `base`, e.g. `sources[0].qos`."""
    return f"{base}.{key}" if base else key


def join_index(base: str, index: int) -> str:
    """The path of list item `index` under `base`, e.g. `sources[0]`."""
    return f"{base}[{index}]"


def join_relative(base: str, relative: str) -> str:
    """Attach a hook's relative path (``""``, ``"qos"``, ``"[0].name"``) to `base`."""
    if not relative or relative.startswith("["):
        return base + relative
    return join_key(base, relative)


def describe(value: Any) -> str:
    """Show a config value the way the user wrote it, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def quote_all(values: Iterable[object]) -> str:
    """`"a", "b", "c"`: a readable list of allowed values."""
    return ", ".join(json.dumps(value) for value in values)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt `word`, if one is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def hint(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean "qos"?)` or an empty string."""
    match = did_you_mean(word, candidates)
    return f' (did you mean "{match}"?)' if match else ""
