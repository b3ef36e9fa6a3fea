"""JSON patches derived from a mutated copy apply back to exactly the mutated document."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.jsonpatch import diff


def apply(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """A minimal RFC 6902 applier for add/remove/replace, as the apiserver applies them."""
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        if not tokens:
            doc = copy.deepcopy(op["value"])
            continue
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = tokens[-1]
        if op["op"] == "remove":
            del parent[last]
        elif op["op"] == "add":
            assert last not in parent, f"add over an existing key {op['path']}"
            parent[last] = copy.deepcopy(op["value"])
        else:
            assert last in parent, f"replace of a missing key {op['path']}"
            parent[last] = copy.deepcopy(op["value"])
    return doc


@pytest.mark.parametrize(
    ("old", "new", "ops"),
    [
        pytest.param(
            {"metadata": {}},
            {"metadata": {"labels": {"ray.io/cluster": "c"}}},
            [{"op": "add", "path": "/metadata/labels", "value": {"ray.io/cluster": "c"}}],
            id="a missing labels map is added whole",
        ),
        pytest.param(
            {"metadata": {"labels": {"a": "1"}}},
            {"metadata": {"labels": {"a": "1", "x/y~z": "2"}}},
            [{"op": "add", "path": "/metadata/labels/x~1y~0z", "value": "2"}],
            id="slash and tilde in a key are escaped",
        ),
        pytest.param(
            {"spec": {"suspend": False}},
            {"spec": {"suspend": True}},
            [{"op": "replace", "path": "/spec/suspend", "value": True}],
            id="a changed scalar is replaced",
        ),
        pytest.param({"a": 1}, {"a": 1}, [], id="no change makes no operation"),
        pytest.param(
            {"a": 1},
            {"a": True},
            [{"op": "replace", "path": "/a", "value": True}],
            id="a type change is a change even when equal in Python",
        ),
    ],
)
def test_diff(old: Any, new: Any, ops: list[dict[str, Any]]) -> None:
    assert diff(old, new) == ops
    assert apply(old, ops) == new


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b/c", "d~e", "f"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(st.sampled_from(["a", "b/c", "d"]), _json),
    st.dictionaries(st.sampled_from(["a", "b/c", "d"]), _json),
)
def test_applying_the_diff_gives_the_new_document(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply(old, diff(old, new)) == new
