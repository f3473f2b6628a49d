"""The walker: parsed YAML checked against config classes, every problem collected.

A config class is a frozen, slotted, keyword-only dataclass whose keys are
declared with `setting(...)` (see `fields.py`). `load_config` walks the parsed
YAML along the annotations and gathers all issues before raising one
`ConfigError`, so a user sees every mistake in one run.

A class may define `check() -> list[(relative path, message)]` (Conflict
issues) and the root class `check_references()` (BadReference).

Recovery rules, so that one mistake neither hides nor invents others: a bad
key with a default falls back to it; a bad list item is left out of the list;
a bad mapping entry or a bad required key makes its parent invalid. Checks of
an object with a bad key still run, on a probe instance that lacks that key:
a check that reads it stops with AttributeError and is skipped, as it would
judge a value the user did not write; the others still report.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args, get_origin

from sync.config.env import expand_env
from sync.config.errors import (
    ConfigError,
    ConfigIssue,
    IssueKind,
    Problem,
    describe,
    hint,
    join_index,
    join_key,
    join_relative,
    quote_all,
)
from sync.config.fields import (
    TAGGED_BY_KEY,
    TAGGED_BY_TYPE,
    FieldSpec,
    annotated_parts,
    bounds_message,
    config_class,
    fields_of,
    optional_inner,
    setting,
    tag_of,
    union_members,
)
from sync.config.units import (
    DURATION,
    DURATION_EXPECTED,
    SIZE,
    SIZE_EXPECTED,
    parse_duration,
    parse_size,
)
from sync.config.yaml_loader import Locator, load_yaml

__all__ = [
    "TAGGED_BY_KEY",
    "TAGGED_BY_TYPE",
    "Check",
    "build",
    "config_class",
    "load_config",
    "load_config_file",
    "setting",
    "walk",
]

_T = TypeVar("_T")

Check = Callable[[Any], Iterable[tuple[str, str] | Problem]]
"""An extra check run on every built instance of one class, e.g. compiling expressions."""

_INVALID: Final = object()
_DEFAULT: Final = object()


def load_config(
    cls: type[_T],
    text: str,
    source: str,
    env: Mapping[str, str] = os.environ,
    *,
    checks: Mapping[type, Check] | None = None,
) -> _T:
    """Parse, expand `${VAR}`, validate and build `cls` from YAML `text`.

    `checks` adds per-class checks whose problems default to kind Syntax.
    Raises ConfigError with every issue found, ordered by line.
    """
    data, locator, issues = load_yaml(text, source)
    data, env_issues = expand_env(data, locator, env)
    instance, walk_issues = walk(cls, data, locator, checks)
    env_paths = {issue.path for issue in env_issues}
    issues += env_issues + [issue for issue in walk_issues if issue.path not in env_paths]
    if issues:
        issues.sort(key=lambda issue: (issue.line is None, issue.line or 0))
        raise ConfigError(issues, source)
    return instance


def load_config_file(
    cls: type[_T],
    path: str | Path,
    env: Mapping[str, str] = os.environ,
    *,
    checks: Mapping[type, Check] | None = None,
) -> _T:
    """`load_config` on a file; an unreadable file is a ConfigError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        issue = ConfigIssue("", f"cannot read the file: {reason}", None, IssueKind.MISSING)
        raise ConfigError([issue], str(path)) from None
    return load_config(cls, text, str(path), env, checks=checks)


def build(
    cls: type[_T],
    data: Any,
    locator: Locator | None = None,
    *,
    source: str = "<config>",
    checks: Mapping[type, Check] | None = None,
) -> _T:
    """Validate already-parsed `data` into `cls` (for tests and programmatic configs)."""
    instance, issues = walk(cls, data, locator or Locator(), checks)
    if issues:
        raise ConfigError(issues, source)
    return instance


def walk(
    cls: type[_T], data: Any, locator: Locator, checks: Mapping[type, Check] | None = None
) -> tuple[_T, list[ConfigIssue]]:
    """Build `cls` from `data`; the instance is only meaningful when no issues came back."""
    walker = _Walker(locator, checks or {})
    instance = walker.build_class(cls, data, "", root=True)
    return instance, walker.issues


class _Walker:
    """One validation run: converts values by annotation and records issues."""

    def __init__(self, locator: Locator, checks: Mapping[type, Check]) -> None:
        self.locator = locator
        self.checks = checks
        self.issues: list[ConfigIssue] = []

    def report(self, path: str, message: str, kind: str) -> Any:
        """Record an issue; returns the invalid marker so callers can return it."""
        self.issues.append(ConfigIssue(path, message, self.locator.line(path), kind))
        return _INVALID

    def report_unknown(
        self, value: dict[Any, Any], known: list[str], path_of: Callable[[str], str]
    ) -> None:
        """An issue for each key of `value` not in `known`, suggesting the closest.

        Keys starting with `x-` are left for the user, e.g. to hold YAML anchors.
        """
        for key in value:
            if key not in known and not str(key).startswith("x-"):
                message = unknown_key_message(str(key), known)
                self.report(path_of(str(key)), message, IssueKind.UNKNOWN_KEY)

    def wrong(self, path: str, expected: str, value: Any, suffix: str = "") -> Any:
        message = f"{expected}, got {describe(value)}{suffix}"
        return self.report(path, message, IssueKind.WRONG_TYPE)

    def convert(self, annotation: Any, value: Any, path: str) -> Any:
        inner = optional_inner(annotation)
        if inner is not None:
            return None if value is None else self.convert(inner, value, path)
        base, marks = annotated_parts(annotation)
        if marks:
            return self._marked(base, marks, value, path)
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            return self.build_class(base, value, path)
        origin = get_origin(base)
        if origin is None:
            return self._scalar(base, value, path)
        return self._generic(origin, base, value, path)

    def _generic(self, origin: Any, annotation: Any, value: Any, path: str) -> Any:
        if origin is Literal:
            return self._literal(get_args(annotation), value, path)
        if origin is dict:
            return self._mapping(get_args(annotation)[1], value, path)
        return self._sequence(annotation, value, path)

    def _marked(self, base: Any, marks: tuple[Any, ...], value: Any, path: str) -> Any:
        if DURATION in marks:
            return self._unit(parse_duration, DURATION_EXPECTED, value, path)
        if SIZE in marks:
            return self._unit(parse_size, SIZE_EXPECTED, value, path)
        if TAGGED_BY_TYPE in marks:
            return self._by_type(union_members(base), value, path)
        if TAGGED_BY_KEY in marks:
            return self._by_key(union_members(base), value, path)
        return self.convert(base, value, path)

    def _unit(self, parse: Callable[[Any], Any], expected: str, value: Any, path: str) -> Any:
        """Durations and sizes are text; a bare 0 means zero of either, plain ints are bytes."""
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and value == 0:
            return parse("0")
        if not isinstance(value, str) and not (is_int and parse is parse_size):
            return self.wrong(path, expected, value)
        try:
            return parse(value)
        except ValueError as exc:
            return self.report(path, str(exc), IssueKind.WRONG_TYPE)

    def _scalar(self, kind: type, value: Any, path: str) -> Any:
        if kind not in _SCALARS:
            raise TypeError(f"unsupported annotation in a config class: {kind!r}")
        expected, accepts = _SCALARS[kind]
        if accepts(value):
            return float(value) if kind is float else value
        quotable = kind is str and value is not None and not isinstance(value, dict | list)
        return self.wrong(path, expected, value, " (put it in quotes)" if quotable else "")

    def _literal(self, choices: tuple[Any, ...], value: Any, path: str) -> Any:
        """One of fixed choices; `protocol: 5` matches the text "5" like `protocol: "5"`."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value) if all(isinstance(c, str) for c in choices) else value
        if value in choices and not isinstance(value, bool):
            return value
        suggestion = hint(value, choices) if isinstance(value, str) else ""
        return self.wrong(path, f"expected one of {quote_all(choices)}", value, suggestion)

    def _sequence(self, annotation: Any, value: Any, path: str) -> Any:
        if value is None:
            value = []
        if not isinstance(value, list):
            return self.wrong(path, "expected a list", value)
        item_type = get_args(annotation)[0]
        items = [self.convert(item_type, item, join_index(path, i)) for i, item in enumerate(value)]
        kept = [item for item in items if item is not _INVALID]
        return tuple(kept) if get_origin(annotation) is tuple else kept

    def _mapping(self, value_type: Any, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return self.wrong(path, "expected a mapping", value)
        result = {key: self._entry(value_type, key, item, path) for key, item in value.items()}
        return _INVALID if _INVALID in result.values() else result

    def _entry(self, value_type: Any, key: Any, item: Any, path: str) -> Any:
        child = join_key(path, str(key))
        if not isinstance(key, str):
            return self.wrong(child, "expected a text key", key, " (put it in quotes)")
        return self.convert(value_type, item, child)

    def _by_type(self, members: tuple[type, ...], value: Any, path: str) -> Any:
        kinds = {tag_of(member): member for member in members}
        if not isinstance(value, dict):
            return self.wrong(path, 'expected a mapping with a "type" key', value)
        type_path = join_key(path, "type")
        if "type" not in value:
            message = f"required key is missing (one of {quote_all(kinds)})"
            self.report(type_path, message, IssueKind.MISSING)
            known = ["type", *dict.fromkeys(s.name for m in members for s in fields_of(m))]
            self.report_unknown(value, known, lambda key: join_key(path, key))
            return _INVALID
        member = kinds.get(value["type"]) if isinstance(value["type"], str) else None
        if member is None:
            return self._literal(tuple(kinds), value["type"], type_path)
        rest = {key: item for key, item in value.items() if key != "type"}
        return self.build_class(member, rest, path, extra_keys=("type",))

    def _by_key(self, members: tuple[type, ...], value: Any, path: str) -> Any:
        kinds = {tag_of(member): member for member in members}
        expected = f"expected a mapping with a single key, one of {quote_all(kinds)}"
        if not isinstance(value, dict):
            return self.wrong(path, expected, value)
        if len(value) != 1:
            got = f"{len(value)} keys" + (f": {quote_all(map(str, value))}" if value else "")
            return self.report(path, f"{expected}, got {got}", IssueKind.WRONG_TYPE)
        ((key, inner),) = value.items()
        if key not in kinds:
            message = unknown_key_message(str(key), kinds)
            return self.report(join_key(path, str(key)), message, IssueKind.UNKNOWN_KEY)
        return self.build_class(kinds[key], inner, join_key(path, key))

    def build_class(
        self,
        cls: type,
        value: Any,
        path: str,
        *,
        root: bool = False,
        extra_keys: Iterable[str] = (),
    ) -> Any:
        """A config object from a mapping, or from a scalar when the class has a `shorthand`."""
        shorthand = getattr(cls, "shorthand", None)
        if value is None:
            value = {}
        if isinstance(value, dict):
            return _ObjectBuilder(self, cls, path, None).fill(value, root, extra_keys)
        if shorthand is None or (isinstance(value, list) and not _takes_list(cls, shorthand)):
            return self.wrong(path, "expected a mapping", value)
        return _ObjectBuilder(self, cls, path, shorthand).fill({shorthand: value}, root, ())


def _takes_list(cls: type, shorthand: str) -> bool:
    """Whether a class's shorthand key is a list, so `- select: [a, b]` is accepted."""
    spec = next(s for s in fields_of(cls) if s.name == shorthand)
    return get_origin(spec.annotation) is tuple


class _ObjectBuilder:
    """Builds one config object, knowing how its keys map to paths."""

    def __init__(self, walker: _Walker, cls: type, path: str, shorthand: str | None) -> None:
        self.walker = walker
        self.cls = cls
        self.path = path
        self.shorthand = shorthand

    def path_of(self, relative: str) -> str:
        """A value given in shorthand lives at the object's own path."""
        return self.path if relative == self.shorthand else join_relative(self.path, relative)

    def fill(self, value: dict[Any, Any], root: bool, extra_keys: Iterable[str]) -> Any:
        specs = fields_of(self.cls)
        self.walker.report_unknown(value, [*extra_keys, *(s.name for s in specs)], self.path_of)
        results = {spec.name: self._field(spec, value) for spec in specs}
        bad = {name for name, result in results.items() if result is _INVALID}
        if not bad:
            instance = self.cls(**{n: r for n, r in results.items() if r is not _DEFAULT})
            self._run_checks(instance, root, partial=False)
            return instance
        self._run_checks(self._probe(specs, results), root, partial=True)
        if any(spec.required for spec in specs if spec.name in bad):
            return _INVALID
        return self.cls(**{n: r for n, r in results.items() if r not in (_DEFAULT, _INVALID)})

    def _probe(self, specs: tuple[FieldSpec, ...], results: dict[str, Any]) -> Any:
        """An instance lacking the bad keys: a check that reads one fails and is skipped."""
        probe: Any = object.__new__(self.cls)
        for spec in specs:
            result = results[spec.name]
            if result is not _INVALID:
                object.__setattr__(probe, spec.name, spec.default if result is _DEFAULT else result)
        return probe

    def _field(self, spec: FieldSpec, value: dict[Any, Any]) -> Any:
        path = self.path_of(spec.name)
        if spec.name not in value:
            if spec.required:
                return self.walker.report(path, "required key is missing", IssueKind.MISSING)
            return _DEFAULT
        raw = value[spec.name]
        result = self.walker.convert(spec.annotation, raw, path)
        message = None if result is _INVALID else bounds_message(spec, raw, result)
        if message is None:
            return result
        kind = IssueKind.WRONG_TYPE if message.startswith("must match") else IssueKind.OUT_OF_RANGE
        return self.walker.report(path, message, kind)

    def _run_checks(self, instance: Any, root: bool, *, partial: bool) -> None:
        extra = self.walker.checks.get(self.cls)
        hooks: list[tuple[Callable[[], Iterable[tuple[str, ...]]], str]] = []
        if extra is not None:
            hooks.append((functools.partial(extra, instance), IssueKind.SYNTAX))
        if hasattr(instance, "check"):
            hooks.append((instance.check, IssueKind.CONFLICT))
        if root and hasattr(instance, "check_references"):
            hooks.append((instance.check_references, IssueKind.BAD_REFERENCE))
        for hook, kind in hooks:
            try:
                problems = list(hook())
            except AttributeError:
                if not partial:
                    raise
                continue
            self._record(problems, kind)

    def _record(self, problems: Iterable[tuple[str, ...]], default_kind: str) -> None:
        for problem in problems:
            kind = problem[2] if len(problem) > 2 else default_kind
            self.walker.report(self.path_of(problem[0]), problem[1], kind)


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """`unknown key (did you mean "qos"?)`, or the list of valid keys when none is close."""
    known = list(known)
    return f"unknown key{hint(key, known) or f' (expected one of {quote_all(known)})'}"


_SCALARS: Final[dict[type, tuple[str, Callable[[Any], bool]]]] = {
    str: ("expected a string", lambda v: isinstance(v, str)),
    int: ("expected an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("expected a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    bool: ("expected true or false", lambda v: isinstance(v, bool)),
}
