"""Turn expression text into a Python AST and map AST positions back to columns.

Python's parser does the tokenising and precedence for us; this module keeps
its failure modes (syntax errors, parser recursion, stray indentation) inside
`ExprError` and converts its positions (UTF-8 byte offsets per line) into the
1-based character column a user counts in the text they wrote. For text that
spans lines the column counts from the start of the whole text.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

from agent.pipeline.expr.errors import ExprError

MAX_LENGTH = 2000
"""Longest accepted expression, in characters."""

MAX_DEPTH = 50
"""Deepest accepted nesting; it bounds the closures' recursion at run time."""

TOO_DEEP = f"expression is nested too deeply (limit {MAX_DEPTH} levels)"

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")


@dataclass(frozen=True, slots=True)
class Source:
    """Parsed text plus what is needed to place any AST node in the original text."""

    text: str
    tree: ast.expr
    lead: int
    line_starts: tuple[int, ...]
    lines: tuple[str, ...]

    def error(self, message: str, node: ast.AST) -> ExprError:
        """An ExprError pointing at the start of ``node``."""
        return ExprError(message, self.node_column(node), self.text)

    def node_column(self, node: ast.AST) -> int:
        """1-based column of the first character of ``node``."""
        return self.column(getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def end_column(self, node: ast.expr) -> int:
        """1-based column just past the last character of ``node``."""
        line = node.end_lineno or node.lineno
        return self.column(line, node.end_col_offset or node.col_offset)

    def column(self, lineno: int, byte_offset: int) -> int:
        """Convert the AST's (line, UTF-8 byte offset) into a column of the whole text."""
        index = min(max(lineno, 1), len(self.lines)) - 1
        prefix = self.lines[index].encode()[:byte_offset].decode(errors="ignore")
        return self.lead + self.line_starts[index] + len(prefix) + 1

    def segment(self, node: ast.AST) -> str:
        """The exact text of ``node``, used to name aggregate arguments."""
        body = self.text[self.lead :]
        return ast.get_source_segment(body, node) or ""


def parse(text: str) -> Source:
    """Parse ``text`` as one Python expression, or raise ExprError with a column."""
    if len(text) > MAX_LENGTH:
        raise ExprError(
            f"expression is too long ({len(text)} characters, limit {MAX_LENGTH})",
            MAX_LENGTH + 1,
            text,
        )
    body = text.lstrip()
    lead = len(text) - len(body)
    if not body.strip():
        raise ExprError("expression is empty", 1, text)
    lines = tuple(line for line in _LINE.findall(body) if line) or ("",)
    starts = _line_starts(lines)
    try:
        tree = _parse_quietly(body)
    except SyntaxError as exc:
        raise _syntax_error(exc, text, lead, lines, starts) from None
    except (RecursionError, MemoryError):  # the parser's own nesting limits
        raise ExprError(TOO_DEEP, lead + 1, text) from None
    return Source(text, tree.body, lead, starts, lines)


def _parse_quietly(body: str) -> ast.Expression:
    """Parse without SyntaxWarnings, which a strict warning filter would turn into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(body, mode="eval")


def _line_starts(lines: tuple[str, ...]) -> tuple[int, ...]:
    """Offset of each line's first character within the stripped text."""
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line))
    return tuple(starts)


def _syntax_error(
    exc: SyntaxError, text: str, lead: int, lines: tuple[str, ...], starts: tuple[int, ...]
) -> ExprError:
    """Rephrase Python's SyntaxError (character offsets, 0 meaning end of input)."""
    message = exc.msg or "invalid syntax"
    if message != "invalid syntax":
        message = f"invalid syntax: {message}"
    if exc.lineno is None:
        column = text.find("\0") + 1 if "\0" in text else lead + 1
    elif not exc.offset:
        column = len(text.rstrip()) + 1
        if message == "invalid syntax":
            message = "unexpected end of expression"
    else:  # after a backslash continuation Python may count from the logical line
        index = min(exc.lineno, len(lines)) - 1
        column = min(lead + starts[index] + exc.offset, len(text) + 1)
    return ExprError(message, column, text)
