"""The layout stays true: sans-IO cores import no driver, event loop or I/O framework; only the bridge
mixes trio and asyncio; the API never imports the web server; no module is over 400 lines; only the
composition root's registration (node/provides.py) writes the node's dispatch tables.

Imports are read from the source (ast), relative ones resolved; those under `if TYPE_CHECKING:` are
types only and do not count. docs/architecture.md, "Layers", says why each rule holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "meshmeet"

# Sans-IO cores: bytes, events and `now` in; bytes, events and deadlines out.
CORES = ("wire", "tree", "sync", "store", "meeting", "membership", "media", "lora")
# What runs the cores: event loops, sockets, serial ports, files, processes, the command line.
DRIVERS = ("node", "web", "api", "lora_io", "recording", "testbed", "sim", "cli", "cli_lora", "cli_media",
           "cli_state", "cli_webapp", "demo", "__main__")
LOOPS = ("trio", "asyncio", "aiohttp", "zeroconf", "serial")
MAX_LINES = 400
# Modules over MAX_LINES, each to be split; shrink this list, never grow it.
TOO_LONG: set[str] = set()


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                out.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                out.add(name)
                out.update(f"{name}.{alias.name}" for alias in child.names)  # `from pkg import module`
            visit(child)

    visit(tree)
    return out


def top(name: str) -> str:
    """The first component of an import (`trio`), or the meshmeet package it is in (`meshmeet.node`)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "meshmeet" and len(parts) > 1 else parts[0]


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) in CORES], ids=lambda p: str(p.relative_to(ROOT)))
def test_cores_import_no_driver_and_no_event_loop(path: Path) -> None:
    bad = sorted({top(name) for name in imports(path)}
                 & ({f"meshmeet.{d}" for d in DRIVERS} | set(LOOPS)))
    assert not bad, f"{path.relative_to(ROOT)} is a sans-IO core but imports {bad}"


def test_only_the_bridge_imports_both_trio_and_asyncio() -> None:
    tops = {p: {top(n) for n in imports(p)} for p in modules()}
    both = [str(p.relative_to(ROOT)) for p, t in tops.items() if "trio" in t and t & {"asyncio", "aiohttp"}]
    assert both == ["meshmeet/web/bridge.py"]


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) == "api"], ids=lambda p: p.name)
def test_the_api_never_imports_the_web_server(path: Path) -> None:
    tops = {top(name) for name in imports(path)}
    assert not tops & {"aiohttp", "asyncio", "meshmeet.web"}, f"{path.name} imports {tops & {'aiohttp', 'asyncio', 'meshmeet.web'}}"


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) == "web"], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_web_side_never_reaches_into_the_node(path: Path) -> None:
    tops = {top(name) for name in imports(path)}
    assert not tops & {"meshmeet.node", "meshmeet.store", "meshmeet.meeting"}, f"{path.name}: {tops}"


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) == "store"], ids=lambda p: p.name)
def test_the_store_never_imports_the_meeting_domain(path: Path) -> None:
    # the store merges changes under rules it is given (store/rules_port.py; meeting/replica.py
    # joins them): the domain sits on the store, never the other way round
    tops = {top(name) for name in imports(path)}
    assert "meshmeet.meeting" not in tops, f"{path.name} imports the meeting domain"


def test_no_module_is_over_400_lines() -> None:
    over = {str(p.relative_to(ROOT)): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(over) <= TOO_LONG, {k: v for k, v in over.items() if k not in TOO_LONG}
    assert not TOO_LONG - set(over), f"now short enough, take them off TOO_LONG: {sorted(TOO_LONG - set(over))}"


def test_the_checker_sees_relative_imports_and_skips_type_checking(tmp_path: Path) -> None:
    # The rules above are only as good as `imports`: it must resolve relative imports and the
    # `from pkg import module` form, and ignore imports made for type hints only.
    probe = PACKAGE / "tree" / "core.py"
    names = imports(probe)
    assert any(n.startswith("meshmeet.tree.") for n in names)
    service = imports(PACKAGE / "node" / "sync_service.py")
    assert "meshmeet.node.node" not in service  # imported under TYPE_CHECKING only
    assert "meshmeet.meeting.meetings" in service  # `from ..meeting import meetings`


# The node's dispatch tables. Every part states what it provides (`provides()`) and only
# node/provides.py's `register`, called by the composition root, writes them; node.py and links.py
# create them, empty, in their constructors.
DISPATCH_TABLES = {"services", "api_handlers", "status_extras", "link_listeners", "roster_listeners", "web_setups",
                   "inbound_handlers", "first_byte_handlers"}
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "remove",
            "__setitem__", "__delitem__", "__iadd__"}
REGISTRATION = "meshmeet/node/provides.py"
TABLE_OWNERS = {"meshmeet/node/node.py", "meshmeet/node/links.py"}


def table_writes(source: str, *, owner: bool = False) -> list[str]:
    """The lines of `source` that write a dispatch table: `x.TABLE[k] = v`, `del x.TABLE[k]`,
    `x.TABLE += ...`, `x.TABLE.append(...)` (any mutating method), and `x.TABLE = ...` except, for a
    table's `owner`, inside `__init__`. (A table passed around under another name is not seen.)"""
    found: list[str] = []

    def is_table(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr in DISPATCH_TABLES

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            targets: list[ast.AST] = []
            if isinstance(child, ast.Assign):
                targets = child.targets
            elif isinstance(child, (ast.AnnAssign, ast.AugAssign)):
                targets = [child.target]
            elif isinstance(child, ast.Delete):
                targets = child.targets
            for target in targets:
                rebinds = is_table(target) and not (owner and function == "__init__"
                                                    and not isinstance(child, (ast.AugAssign, ast.Delete)))
                if (isinstance(target, ast.Subscript) and is_table(target.value)) or rebinds \
                        or (isinstance(child, ast.AugAssign) and is_table(target)):
                    found.append(f"{child.lineno}: {ast.unparse(child).splitlines()[0]}")
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr in MUTATORS and is_table(child.func.value)):
                found.append(f"{child.lineno}: {ast.unparse(child)}")
            visit(child, inner)

    visit(ast.parse(source), "")
    return found


@pytest.mark.parametrize("path", [p for p in modules() if str(p.relative_to(ROOT)) != REGISTRATION],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_registration_writes_the_nodes_dispatch_tables(path: Path) -> None:
    writes = table_writes(path.read_text(encoding="utf-8"), owner=str(path.relative_to(ROOT)) in TABLE_OWNERS)
    assert not writes, (f"{path.relative_to(ROOT)} writes the node's dispatch tables; state it in the service's "
                        f"provides() instead (node/provides.py): {writes}")


def test_the_table_checker_sees_every_kind_of_write() -> None:
    # The rule above is only as good as `table_writes`: each of these is one write, in any module.
    probe = (
        "class S:\n"
        "    def __init__(self, node):\n"
        "        node.services[0x20] = self.on\n"                      # 3
        "        node.api_handlers.update({'x': self.x})\n"             # 4
        "        node.link_listeners.append(self.up)\n"                 # 5
        "        self.node.links.first_byte_handlers[0x52] = self.r\n"  # 6
        "        node.web_setups += [self.setup]\n"                     # 7
        "        node.status_extras.setdefault('k', self.s)\n"          # 8
        "        del node.inbound_handlers['media_up']\n"               # 9
        "    def later(self, node):\n"
        "        node.roster_listeners = []\n"                          # 11
        "        handler = node.services.get(0x20)\n"                   # reads are fine
        "        for fn in node.link_listeners: fn('p', True)\n"
    )
    assert [w.split(":")[0] for w in table_writes(probe)] == ["3", "4", "5", "6", "7", "8", "9", "11"]
    # the tables' owners create them in __init__ (and nowhere else)
    assert [w.split(":")[0] for w in table_writes(probe, owner=True)] == ["3", "4", "5", "6", "7", "8", "9", "11"]
    assert table_writes("class N:\n    def __init__(self):\n        self.services: dict = {}\n", owner=True) == []
    assert table_writes("class N:\n    def __init__(self):\n        self.services: dict = {}\n") != []
