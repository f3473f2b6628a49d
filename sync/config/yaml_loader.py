"""YAML text to plain Python values, remembering the line of every key path.

PyYAML's `safe_load` forgets positions and silently keeps the last of two
duplicate keys; we compose the node tree instead, so every later issue can
name its line and a duplicate key is reported rather than hidden. Booleans
follow YAML 1.2 (only true/false), so `country: NO` stays a string.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sync.config.errors import ConfigError, ConfigIssue, IssueKind, join_index, join_key

_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_VALUE_TAG: Final = "tag:yaml.org,2002:value"

MAX_VALUES: Final = 100_000
"""Values a document may expand to: aliases inside aliases ("billion laughs") grow
exponentially, and no real config comes near this."""
MAX_DEPTH: Final = 64
"""Nesting levels a document may have (the YAML composer itself recurses)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {  # a bare `=` is PyYAML's unconstructable !!value
    first: [entry for entry in entries if entry[0] not in (_BOOL_TAG, _VALUE_TAG)]
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class Locator:
    """Maps key paths (`sources[0].qos`) to 1-based line numbers."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.plain: set[str] = set()
        """Paths of unquoted string scalars containing `$`, whose type is re-read after `${VAR}`."""

    def line(self, path: str) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key)."""
        while path not in self.lines:
            if not path:
                return None
            path = _parent(path)
        return self.lines[path]


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[: max(cut, 0)]


def load_yaml(text: str, source: str) -> tuple[Any, Locator, list[ConfigIssue]]:
    """Parse one YAML document into (value, locator, duplicate-key issues).

    Raises ConfigError when the text is not YAML at all: nothing sensible can follow.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_issue(exc)], source) from None
    except yaml.YAMLError as exc:
        issue = ConfigIssue("", f"YAML syntax error: {exc}", None, IssueKind.SYNTAX)
        raise ConfigError([issue], source) from None
    except RecursionError:
        raise ConfigError([_too_deep(None)], source) from None
    builder = _Builder()
    try:
        value = None if root is None else builder.value(root, "")
    except _Refused as refused:
        raise ConfigError([refused.issue], source) from None
    except RecursionError:  # a merge key that refers to its own mapping (`a: &a {<<: *a}`)
        issue = ConfigIssue("", "a merge key (<<) refers to itself", None, IssueKind.SYNTAX)
        raise ConfigError([issue], source) from None
    return value, builder.locator, builder.issues


class _Refused(Exception):
    """A document that cannot be turned into values at all (one issue, raised)."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def _too_deep(line: int | None) -> ConfigIssue:
    return ConfigIssue("", f"nested more than {MAX_DEPTH} levels deep", line, IssueKind.SYNTAX)


def resolve_plain_scalar(text: str) -> Any:
    """The value an unquoted scalar `text` would have had in YAML (int, float, bool, ...)."""
    resolver: Any = _Loader("")
    tag = resolver.resolve(ScalarNode, text, (True, False))
    return SafeConstructor().construct_object(ScalarNode(tag, text))


def _syntax_issue(exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if mark is None:
        return ConfigIssue("", f"YAML syntax error: {problem}", None, IssueKind.SYNTAX)
    message = f"YAML syntax error at column {mark.column + 1}: {problem}"
    return ConfigIssue("", message, mark.line + 1, IssueKind.SYNTAX)


_Entry = tuple[Any, Node, Node]


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Turns composed nodes into dicts, lists and scalars while filling a Locator."""

    def __init__(self) -> None:
        self.locator = Locator()
        self.issues: list[ConfigIssue] = []
        self._constructor = SafeConstructor()
        self._values = 0

    def value(self, node: Node, path: str, depth: int = 0) -> Any:
        self._count(node, depth)
        self.locator.lines.setdefault(path, _line(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            items = enumerate(node.value)
            return [self.value(item, join_index(path, i), depth + 1) for i, item in items]
        scalar = self._scalar(node)
        if isinstance(scalar, str) and "$" in scalar and getattr(node, "style", None) is None:
            self.locator.plain.add(path)
        return scalar

    def _count(self, node: Node, depth: int) -> None:
        """Refuse a document that nests too deep or expands past MAX_VALUES (aliases)."""
        self._values += 1
        if depth > MAX_DEPTH:
            raise _Refused(_too_deep(_line(node)))
        if self._values > MAX_VALUES:
            message = (
                f"the document expands to more than {MAX_VALUES:,} values "
                "(aliases repeated inside aliases?)"
            )
            raise _Refused(ConfigIssue("", message, _line(node), IssueKind.SYNTAX))

    def _scalar(self, node: Node) -> Any:
        """The scalar's value; an explicit tag PyYAML cannot construct is refused."""
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            message = f"cannot read this value with tag {node.tag} ({type(exc).__name__})"
            raise _Refused(ConfigIssue("", message, _line(node), IssueKind.SYNTAX)) from None

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        entries = self._merged_entries(node, path) + self._own_entries(node, path)
        for key, key_node, value_node in entries:
            child = join_key(path, str(key))
            self.locator.lines[child] = _line(key_node)
            result[key] = self.value(value_node, child, depth + 1)
        return result

    def _own_entries(self, node: MappingNode, path: str, *, report: bool = True) -> list[_Entry]:
        """The entries written in `node` itself; a key written twice counts once, reported."""
        seen: dict[Any, int] = {}
        entries: list[_Entry] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, ScalarNode):
                self._issue(path, "a mapping key must be a plain value", key_node, report)
                continue
            key = self._scalar(key_node)
            if key in seen:
                where = f"duplicate key (first defined on line {seen[key]})"
                self._issue(join_key(path, str(key)), where, key_node, report)
                continue
            seen[key] = _line(key_node)
            entries.append((key, key_node, value_node))
        return entries

    def _merged_entries(self, node: MappingNode, path: str) -> list[_Entry]:
        """Entries brought in by `<<: *anchor` merge keys; the node's own keys override them."""
        entries: list[_Entry] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for merged in reversed(sources):
                self._count(merged, 0)  # merges of merges expand like aliases do
                if not isinstance(merged, MappingNode):
                    self._issue(
                        path,
                        "merge key << expects a mapping or an alias such as *broker",
                        merged,
                        True,
                    )
                    continue
                nested = self._merged_entries(merged, path)
                entries.extend(nested + self._own_entries(merged, path, report=False))
        return entries

    def _issue(self, path: str, message: str, node: Node, report: bool) -> None:
        if report:
            self.issues.append(ConfigIssue(path, message, _line(node), IssueKind.SYNTAX))
