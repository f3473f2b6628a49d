"""`${VAR}` and `${VAR:-default}` in string values, so secrets stay out of the YAML.

Expansion runs on the parsed values, not the raw text, so line numbers stay
true and a variable can never inject YAML structure. An unquoted scalar that
was only a reference takes the type its text would have had (`qos: ${QOS:-1}`
gives the integer 1). `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from sync.config.errors import ConfigIssue, IssueKind, join_index, join_key
from sync.config.yaml_loader import Locator, resolve_plain_scalar

_REFERENCE: Final = re.compile(
    r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\{"
)


def expand_env(
    data: Any, locator: Locator, env: Mapping[str, str]
) -> tuple[Any, list[ConfigIssue]]:
    """A copy of `data` with references replaced, and an issue per unset or malformed one."""
    expander = _Expander(locator, env)
    return expander.walk(data, ""), expander.issues


class _Expander:
    def __init__(self, locator: Locator, env: Mapping[str, str]) -> None:
        self.locator = locator
        self.env = env
        self.issues: list[ConfigIssue] = []

    def walk(self, data: Any, path: str) -> Any:
        if isinstance(data, dict):
            return {key: self.walk(value, join_key(path, str(key))) for key, value in data.items()}
        if isinstance(data, list):
            return [self.walk(item, join_index(path, i)) for i, item in enumerate(data)]
        if isinstance(data, str) and "$" in data:
            return self._expand(data, path)
        return data

    def _expand(self, text: str, path: str) -> Any:
        substituted = False

        def replace(match: re.Match[str]) -> str:
            nonlocal substituted
            if match.group(0) == "$${":
                return "${"
            substituted = True
            return self._lookup(match, path)

        result = _REFERENCE.sub(replace, text)
        if substituted and path in self.locator.plain:
            return resolve_plain_scalar(result)
        return result

    def _lookup(self, match: re.Match[str], path: str) -> str:
        name, default = match.group("name"), match.group("default")
        if name is None:
            message = (
                "bad variable reference; write ${NAME} or ${NAME:-default}, or $${ for a literal ${"
            )
            self._report(path, message, IssueKind.SYNTAX)
            return match.group(0)
        value = self.env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            message = (
                f'environment variable "{name}" is not set'
                f" (write ${{{name}:-default}} to give a default)"
            )
            self._report(path, message, IssueKind.BAD_REFERENCE)
            return ""
        return value

    def _report(self, path: str, message: str, kind: str) -> None:
        self.issues.append(ConfigIssue(path, message, self.locator.line(path), kind))
