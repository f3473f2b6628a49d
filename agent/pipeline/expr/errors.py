"""The one exception the expression language raises, always at compile time."""

from __future__ import annotations


class ExprError(Exception):
    """An expression that cannot be compiled, with the 1-based column of the culprit.

    The column lets the config loader report ``filter: column 7: ...`` under the
    YAML key path, so a user can find the mistake without reading our source.
    """

    def __init__(self, message: str, column: int, text: str) -> None:
        super().__init__(message, column, text)
        self.message = message
        self.column = column
        self.text = text

    def __str__(self) -> str:
        return f"{self.message} at column {self.column}"
