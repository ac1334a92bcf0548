"""Is the relay tree whole? A pure check over the "tree" objects the running nodes report.

Given each live node's tree status (or None when its API did not answer), which links are up and
optionally which root each part of the network should have, `check_tree` answers whether every
connected part agrees on one root inside that part, every other node has a parent it is linked to
over an up link, and every parent lists that node as a child: the same rule the simulator uses.
This module must never poll, sleep or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Verdict:
    whole: bool
    why: str = ""


def components(nodes: set[str], up_links: set[frozenset[str]]) -> list[set[str]]:
    """Connected parts of `nodes` over `up_links` (links touching other nodes are ignored)."""
    left, parts = set(nodes), []
    while left:
        start = min(left)
        part, todo = {start}, [start]
        while todo:
            cur = todo.pop()
            for link in up_links:
                if cur in link:
                    for other in link:
                        if other in left and other not in part:
                            part.add(other)
                            todo.append(other)
        left -= part
        parts.append(part)
    return parts


def check_tree(
    trees: Mapping[str, dict | None],
    up_links: set[frozenset[str]],
    expected_roots: Mapping[str, str] | None = None,
) -> Verdict:
    """`trees`: node id -> its status "tree" (None: no answer). `expected_roots`: node -> root it should have."""
    for node, tree in trees.items():
        if not isinstance(tree, dict):
            return Verdict(False, f"{node} did not answer")
    for part in components(set(trees), up_links):
        roots = {trees[n].get("root") for n in part}  # type: ignore[union-attr]
        if len(roots) != 1:
            return Verdict(False, f"no agreement on the root: {sorted(map(str, roots))}")
        root = roots.pop()
        if root not in part:
            return Verdict(False, f"root {root} is not reachable from {sorted(part)}")
        for node in part:
            tree = trees[node]
            assert tree is not None
            if expected_roots is not None and expected_roots.get(node, root) != root:
                return Verdict(False, f"{node} has root {root}, expected {expected_roots[node]}")
            parent = tree.get("parent")
            if node == root:
                if parent is not None:
                    return Verdict(False, f"root {node} has a parent")
                continue
            if parent not in part or frozenset((node, parent)) not in up_links:
                return Verdict(False, f"{node} has parent {parent} over no up link")
            children = trees[parent].get("children") or []  # type: ignore[union-attr]
            if node not in children:
                return Verdict(False, f"{parent} does not list {node} as a child")
            cur, hops = node, 0
            while cur != root:
                cur, hops = trees[cur].get("parent"), hops + 1  # type: ignore[union-attr]
                if cur not in part or hops > len(part):
                    return Verdict(False, f"following parents from {node} never reaches {root} (a loop)")
    return Verdict(True)
