"""Every metric the agent and the hub can expose is documented in docs/operations.md.

The family names are string literals in agent/ and sync/ (a name is never built at
run time, so that a grep finds where it comes from); this test finds each of them in
the metrics reference, so a new metric cannot ship without its line there.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAMILY_NAME = re.compile(r"""["'](edgestream_[a-z0-9_]+)["']""")


def metric_names() -> set[str]:
    names: set[str] = set()
    for package in ("agent", "sync"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(FAMILY_NAME.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_metric_family_is_documented() -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    names = metric_names()
    assert len(names) > 40  # the agent's and the hub's families were found at all
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert not missing, f"not in docs/operations.md: {missing}"
