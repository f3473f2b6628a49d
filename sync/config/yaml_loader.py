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


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [entry for entry in entries if entry[0] != _BOOL_TAG]
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
    builder = _Builder()
    value = None if root is None else builder.value(root, "")
    return value, builder.locator, builder.issues


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


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Turns composed nodes into dicts, lists and scalars while filling a Locator."""

    def __init__(self) -> None:
        self.locator = Locator()
        self.issues: list[ConfigIssue] = []
        self._constructor = SafeConstructor()

    def value(self, node: Node, path: str) -> Any:
        self.locator.lines.setdefault(path, _line(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.value(item, join_index(path, i)) for i, item in enumerate(node.value)]
        scalar = self._constructor.construct_object(node)
        if isinstance(scalar, str) and "$" in scalar and getattr(node, "style", None) is None:
            self.locator.plain.add(path)
        return scalar

    def _mapping(self, node: MappingNode, path: str) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in self._merged_entries(node) + self._own_entries(node, path):
            key = self._key(key_node, path)
            if key is not None:
                child = join_key(path, str(key))
                self.locator.lines[child] = _line(key_node)
                result[key] = self.value(value_node, child)
        return result

    def _own_entries(
        self, node: MappingNode, path: str, *, report: bool = True
    ) -> list[tuple[Node, Node]]:
        """The entries written in `node` itself; a key written twice counts once, reported."""
        seen: dict[Any, int] = {}
        entries = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in seen:
                if report:
                    self._duplicate(join_key(path, str(key)), _line(key_node), seen[key])
                continue
            seen[key] = _line(key_node)
            entries.append((key_node, value_node))
        return entries

    def _merged_entries(self, node: MappingNode) -> list[tuple[Node, Node]]:
        """Entries brought in by `<<: *anchor` merge keys; the node's own keys override them."""
        entries: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for merged in reversed(sources):
                if isinstance(merged, MappingNode):
                    entries.extend(
                        self._merged_entries(merged) + self._own_entries(merged, "", report=False)
                    )
        return entries

    def _key(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode):
            return self._constructor.construct_object(node)
        message = "a mapping key must be a plain value, not a list or mapping"
        self.issues.append(ConfigIssue(path, message, _line(node), IssueKind.SYNTAX))
        return None

    def _duplicate(self, path: str, line: int, first_line: int) -> None:
        message = f"duplicate key (first defined on line {first_line})"
        self.issues.append(ConfigIssue(path, message, line, IssueKind.SYNTAX))
