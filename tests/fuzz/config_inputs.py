"""Mutated config documents, grown from the real example configs in configs/.

Tree mutations work on the parsed document (delete a key, change a value's type,
add an unknown key, a wrong unit, a huge number, nesting) and dump it back to YAML;
text mutations damage the YAML itself (cuts, junk, duplicated lines, anchors).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AGENT_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "hub.yaml")
HUB_CONFIG = CONFIGS / "hub.yaml"

ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        None, True, 0, -1, 2**63, 10**400, 1e309, -1e309, float("nan"), "", " ", "5 parsecs",
        "10 s", "-5s", "1e9d", "0x10", "16XiB", "99999999999999999999GiB", "${UNSET}",
        "${UNSET:?needed}", "$", "{}", [], {}, [[]], {"": None}, "é" * 3, "\t", "a" * 300,
        "mqtt://", "127.0.0.1:99999", "*.*", "#", "+/#/+",
    ]
)  # fmt: skip


# "mqtt://[::1" is left out: it raises ValueError (a known bug, tested on its own in
# test_fuzz_config.py) and would mask what else the fuzzer finds.


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping entry or list item in the document."""
    found: list[tuple[Any, ...]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def tree_mutated(draw: st.DrawFn, original: Any) -> Any:
    """The document after 1-3 structural edits."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        kind = draw(st.sampled_from(["delete", "value", "unknown", "nest", "wrap", "rename"]))
        if kind == "delete":
            del parent[key]
        elif kind == "value":  # a copy: the strategy's lists and dicts are shared
            parent[key] = copy.deepcopy(draw(ODD_VALUES))
        elif kind == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["nmae", "tpye", "extra", "", "1", "qos "]))] = 1
        elif kind == "nest":
            depth = draw(st.integers(1, 40))
            for _ in range(depth):
                parent[key] = {"x": parent[key]} if draw(st.booleans()) else [parent[key]]
        elif kind == "wrap":
            parent[key] = [parent[key], copy.deepcopy(parent[key])]
        elif kind == "rename" and isinstance(parent, dict):
            parent[str(key).upper() + "_"] = parent.pop(key)
    return doc


def dump(doc: Any) -> str:
    """YAML text of a document (NaN and infinities as YAML spells them)."""
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


JUNK = st.text(
    st.characters(exclude_characters="!=", exclude_categories=["Cs"]), min_size=1, max_size=8
) | st.sampled_from([": ", "- ", "\n  ", "{", "[", "&a ", "*a", "<<: *a\n", "'", '"', "#", "\t"])
"""Text spliced into a YAML document. Without `!` and `=`: explicit tags and a plain `=`
are a known bug, tested on their own (test_fuzz_config.py), so they must not mask what
else the fuzzer finds."""


@st.composite
def text_mutated(draw: st.DrawFn, text: str) -> str:
    """The YAML text after 1-4 edits: junk inserted, a span deleted, a line repeated."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "dup_line", "cut"]))
        if kind == "insert":
            text = text[:at] + draw(JUNK) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind == "dup_line":
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        else:
            text = text[:at]
    return text


def alias_bomb(levels: int, width: int = 9) -> str:
    """`billion laughs`: each level lists the previous one `width` times (width**levels)."""
    lines = ['l0: &l0 ["lol"]']
    lines += [
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"
