"""The import contracts of DESIGN.md §2, checked on the source of ``medchaind/``.

Three tables say what the design says, and :func:`check` compares every ``.py`` file of
the package with them, reading its syntax tree (nothing is imported or executed):

* :data:`PLACES`: which layer each file belongs to and whether that layer is PURE;
* :data:`COLUMNS`: the order of the layers; an import may only point down a column;
* :data:`IMPURE` and :data:`OWNERS`: what a pure file may not import, and the one place
  each swappable stack library is imported.

Every import counts, also one inside a function or a ``try``; only the body of an
``if TYPE_CHECKING:`` block is skipped (it never runs). The check is static: importing
``medchaind.modules.identity.machine`` also runs ``medchaind/modules/__init__.py`` at
run time, but each file is judged by the imports it writes itself.

A file that no row of :data:`PLACES` covers is a violation too, so a new file or folder
gets a layer (and a purity) when it is added, not when someone remembers.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "medchaind"

# ---------------------------------------------------------------------------- the tables


@dataclass(frozen=True, slots=True)
class Place:
    layer: str
    files: tuple[str, ...]  # fnmatch patterns, relative to medchaind/ ("*" crosses folders)
    pure: bool = False


#: Where each file sits. First match wins, so the client side of a module package and
#: the registry are listed before the pure ``modules/*`` row.
PLACES: tuple[Place, ...] = (
    Place("testing", ("testing/*",)),
    Place("cli", ("cli/*",)),
    # What a module's console pages are made of (console/kit.py) and the pages each module
    # brings (modules/<name>/console.py, found by convention like cli.py): they see the
    # chain only through the query callable the console hands them, so they may import
    # the kit, the registry and the pure layers, never node/ or the client side.
    Place("console views", ("console/kit.py", "modules/*/console.py")),
    Place("console", ("console/*",)),
    # The client side: what a client process runs (sign, encrypt, validate FHIR or EPCIS,
    # talk to the socket, the `medchain <module>` commands). In a module package these
    # are client.py, cli.py and every file that machine.py does not import: the PURE
    # state machine of a module is its machine.py and what it imports (transitively)
    # from its own package, and nothing else (see module_client_side()).
    Place("client", (
        "client.py", "flows.py", "clikit.py",
        "modules/*/client.py", "modules/*/cli.py",
    )),
    Place("node", ("node/*",)),
    Place("ipc", ("ipc/*",)),
    Place("consensus", ("consensus/*",)),
    Place("sync", ("sync/*",)),
    Place("net", ("net/*",)),
    Place("mempool", ("mempool/*",)),
    Place("ledger", ("ledger.py",)),
    Place("store", ("store/*",)),
    # The small I/O modules beside node/ (DESIGN.md §2): keystore and genesis files,
    # atomic private writes; logging setup.
    Place("host I/O", ("files.py", "logs.py")),
    # The registry: the plug-in loader. It imports the extra modules named in
    # MEDCHAIND_EXTRA_MODULES (importlib, os.environ), so it is not a state machine.
    Place("registry", ("modules/__init__.py",)),
    Place("chain", ("chain/*",), pure=True),
    Place("core", ("core/*",), pure=True),
    Place("modules", ("modules/*",), pure=True),
    Place("app", ("app/*",), pure=True),
    Place("types", ("types/*",), pure=True),
    Place("codec/crypto/errors", ("codec.py", "crypto.py", "errors.py", "__init__.py"), pure=True),
)

PURE_LAYERS = ("chain", "core", "modules", "app", "types", "codec/crypto/errors")

#: DESIGN.md §2, top to bottom. A file may import its own layer and any layer below it
#: in a column. Two columns share the top (cli/) and the pure bottom: the node's
#: services, and beside them the client side, which talks to a node only through the
#: IPC client transport. So the node never imports client code and a client never
#: imports the node's store, network or consensus.
COLUMNS: tuple[tuple[str, ...], ...] = (
    ("cli", "console", "node", "ipc", "consensus", "sync", "net", "mempool", "ledger", "store",
     "host I/O", "registry", *PURE_LAYERS),
    ("cli", "client", "ipc", "host I/O", "registry", *PURE_LAYERS),
    ("cli", "console", "console views", "registry", *PURE_LAYERS),
)

#: testing/ (simulator, clusters, harnesses) may import anything; nothing imports it.
TEST_TOOLING = "testing"

#: What a PURE file may not import, and why. DESIGN.md §2: "pure and synchronous: no
#: trio, no sockets, no clock, no disk. Time enters as block time or as a timeout event."
IMPURE: Mapping[str, str] = {
    "trio": "async runtime", "anyio": "async runtime", "asyncio": "async runtime",
    "threading": "threads", "multiprocessing": "processes", "concurrent": "threads",
    "subprocess": "processes", "signal": "signals",
    "socket": "network", "ssl": "network", "select": "network", "selectors": "network",
    "http": "network", "urllib": "network", "libp2p": "network",
    "plyvel": "disk", "os": "disk and environment", "pathlib": "disk", "io": "disk",
    "shutil": "disk", "tempfile": "disk", "glob": "disk",
    "time": "clock", "datetime": "clock",
    "random": "randomness", "secrets": "randomness", "uuid": "clock and randomness",
    "importlib": "loads code by name at run time",
    "logging": "side effect on every replay (return what happened; the host logs it)",
}
#: Builtins a PURE file may not call.
IMPURE_CALLS: Mapping[str, str] = {
    "open": "disk", "print": "output", "input": "input", "__import__": "loads code by name at run time",
}

#: Each swappable stack library is imported in one place (DESIGN.md §2: "swapping a
#: dependency touches one place").
OWNERS: Mapping[str, tuple[str, ...]] = {
    "plyvel": ("store/*",),
    "libp2p": ("net/*",),
    "multiaddr": ("net/*",),  # libp2p's address type
    "cbor2": ("codec.py",),
    "nacl": ("crypto.py",),
}

# ------------------------------------------------------------------------------ checker


@dataclass(frozen=True, slots=True)
class Violation:
    path: str  # relative to the repository root
    line: int  # 0: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


CLIENT = next(p for p in PLACES if p.layer == "client")
#: rows judged before a module package's client-side split (a module's console.py is
#: never imported by its machine.py, yet it is a console view, not client code)
BEFORE_SPLIT = tuple(p for p in PLACES if p.layer == "console views")


def module_client_side(files: Mapping[str, str]) -> set[str]:
    """Files of module packages that are client side: not reachable from the package's
    ``machine.py`` (or ``__init__.py``) through imports within the package."""
    packages = {rel.split("/")[1] for rel in files if rel.startswith("modules/") and rel.count("/") == 2}
    client: set[str] = set()
    for pkg in packages:
        own = {rel for rel in files if rel.startswith(f"modules/{pkg}/")}
        pure: set[str] = set()
        todo = [r for r in (f"modules/{pkg}/machine.py", f"modules/{pkg}/__init__.py") if r in own]
        while todo:
            rel = todo.pop()
            if rel in pure:
                continue
            pure.add(rel)
            for _, module, names in _imports(rel, ast.parse(files[rel])):
                for target in _targets(module, names, own) if module.startswith(PACKAGE) else ():
                    if target is not None and target in own:
                        todo.append(target)
        client |= own - pure
    return client


def place_of(rel: str, client_side: Collection[str] = ()) -> Place | None:
    """The row of :data:`PLACES` that ``rel`` (a path under medchaind/) falls in."""
    for place in BEFORE_SPLIT:
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in place.files):
            return place
    if rel in client_side:
        return CLIENT
    for place in PLACES:
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in place.files):
            return place
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: all of ``tree`` except ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _module_of(rel: str) -> tuple[str, str]:
    """``rel`` -> (its dotted module name, the package its relative imports start from)."""
    parts = [PACKAGE, *rel[: -len(".py")].split("/")]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(rel: str, tree: ast.AST) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, absolute module, names taken from it) for each runtime import in ``tree``."""
    _, package = _module_of(rel)
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module, tuple(a.name for a in node.names)


def _file_of(module: str, files: Collection[str]) -> str | None:
    """The file (under medchaind/) that defines ``module``, if the package has it."""
    rel = module.split(".")[1:]
    if not rel:
        return "__init__.py"
    for candidate in ("/".join(rel) + ".py", "/".join([*rel, "__init__.py"])):
        if candidate in files:
            return candidate
    return None


def _may_import(importer: str, imported: str) -> bool:
    if importer == imported or importer == TEST_TOOLING:
        return True
    return any(importer in column and imported in column
               and column.index(importer) < column.index(imported) for column in COLUMNS)


def _targets(module: str, names: tuple[str, ...], files: Collection[str]) -> list[str | None]:
    """The package files an import of ``module`` (taking ``names``) loads.

    ``from medchaind.x import y`` loads ``x/y.py`` when y is a submodule, else ``x``.
    """
    found = [_file_of(f"{module}.{name}", files) for name in names]
    if names and all(found):
        return list(found)
    return [_file_of(module, files), *(f for f in found if f)]


def check(files: Mapping[str, str], context: Collection[str] = ()) -> list[Violation]:
    """Every breach of the tables by ``files`` ({path under medchaind/: source text}).

    ``context`` names further files of the package that imports may resolve to, without
    checking them (a test checks one made-up file against the real tree that way).
    """
    known = set(files) | set(context)
    # which module files are client side follows from the whole tree's imports
    sources = {rel: (ROOT / PACKAGE / rel).read_text(encoding="utf-8") for rel in context
               if rel not in files and rel.startswith("modules/")}
    client_side = module_client_side({**sources, **files})
    out: list[Violation] = []
    for rel, source in sorted(files.items()):
        where = f"{PACKAGE}/{rel}"
        place = place_of(rel, client_side)
        if place is None:
            out.append(Violation(where, 0, "in no layer: add it to PLACES in tests/unit/test_layers.py"))
            continue
        tree = ast.parse(source, where)
        for line, module, names in _imports(rel, tree):
            top = module.split(".")[0]
            if top == PACKAGE:
                for target in _targets(module, names, known):
                    if target is None:
                        out.append(Violation(where, line, f"imports {module}, which does not exist"))
                        continue
                    to = place_of(target, client_side)
                    if to is None:
                        continue  # reported for the target file itself
                    if to.layer == TEST_TOOLING and place.layer != TEST_TOOLING:
                        out.append(Violation(where, line, f"{place.layer} imports {PACKAGE}/{target}: "
                                             "nothing in the package imports testing/"))
                    elif not _may_import(place.layer, to.layer):
                        out.append(Violation(where, line, f"{place.layer} imports {PACKAGE}/{target} "
                                             f"({to.layer}): not below {place.layer} in DESIGN.md §2"))
                continue
            if place.pure and top in IMPURE:
                out.append(Violation(where, line, f"pure layer {place.layer} imports {module} ({IMPURE[top]})"))
            owners = OWNERS.get(top)
            if owners and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in owners):
                out.append(Violation(where, line, f"imports {module}: {top} is imported only in "
                                     + ", ".join(f"{PACKAGE}/{p}" for p in owners)))
        if place.pure:
            for node in _runtime_nodes(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in IMPURE_CALLS):
                    out.append(Violation(where, node.lineno, f"pure layer {place.layer} calls "
                                         f"{node.func.id}() ({IMPURE_CALLS[node.func.id]})"))
                elif isinstance(node, ast.Constant) and isinstance(node.value, float):
                    out.append(Violation(where, node.lineno, f"pure layer {place.layer} has a float "
                                         f"literal {node.value!r} (not deterministic across platforms)"))
    return sorted(out, key=lambda v: (v.path, v.line))


@functools.cache
def package_sources() -> dict[str, str]:
    pkg = ROOT / PACKAGE
    return {p.relative_to(pkg).as_posix(): p.read_text(encoding="utf-8") for p in sorted(pkg.rglob("*.py"))}


# -------------------------------------------------------------------------------- tests


def test_the_tree_keeps_the_contracts() -> None:
    violations = check(package_sources())
    assert not violations, "DESIGN.md §2 import contracts broken:\n" + "\n".join(map(str, violations))


def test_the_tables_name_the_same_layers() -> None:
    placed = {place.layer for place in PLACES}
    ordered = {layer for column in COLUMNS for layer in column}
    assert placed == ordered | {TEST_TOOLING}
    assert {place.layer for place in PLACES if place.pure} == set(PURE_LAYERS)
    for column in COLUMNS:
        assert len(set(column)) == len(column)
        assert column[-len(PURE_LAYERS):] == PURE_LAYERS  # pure layers are at the bottom


def test_module_packages_split_into_machine_and_client_side() -> None:
    assert place_of("modules/records/machine.py") == place_of("modules/anything/new.py")
    assert place_of("modules/records/machine.py").pure  # type: ignore[union-attr]
    for rel in ("modules/claims/client.py", "modules/claims/cli.py"):
        assert place_of(rel).layer == "client"  # type: ignore[union-attr]
    # records' FHIR validation and encryption are client side because machine.py never imports them
    client_side = module_client_side(package_sources())
    assert {"modules/records/fhir.py", "modules/records/encryption.py"} <= client_side
    assert "modules/records/machine.py" not in client_side
    assert place_of("modules/__init__.py").layer == "registry"  # type: ignore[union-attr]


# Each case adds one file to the real tree and expects exactly the violations listed
# (as regular expressions), proving the check fails on a breach and stays quiet otherwise.
BREACHES = [
    pytest.param("core/bad.py", "import trio\n",
                 [r"medchaind/core/bad.py:1: pure layer core imports trio \(async runtime\)"], id="trio-in-core"),
    pytest.param("app/bad.py", "def now():\n    import time\n    return time.time()\n",
                 [r"app/bad.py:2: pure layer app imports time \(clock\)"], id="import-in-function-counts"),
    pytest.param("types/bad.py", "from datetime import datetime\nfrom os import path\n",
                 [r"types/bad.py:1: pure layer types imports datetime", r"types/bad.py:2: .* imports os "],
                 id="from-imports"),
    pytest.param("modules/identity/extra.py", "from pathlib import Path\n", [],
                 id="a-module-file-machine-does-not-import-is-client-side"),
    pytest.param("chain/bad.py", "import random\nx = 0.5\n\ndef f():\n    return open('x')\n",
                 [r"chain/bad.py:1: .*random", r"chain/bad.py:2: .*float literal 0.5",
                  r"chain/bad.py:5: pure layer chain calls open\(\)"], id="randomness-float-open"),
    pytest.param("core/ok.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n"
                 "    from ..node.node import Node\n", [], id="type-checking-block-is-skipped"),
    pytest.param("core/bad.py", "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import socket\n",
                 [r"core/bad.py:5: pure layer core imports socket"], id="type-checking-else-counts"),
    pytest.param("node/bad.py", "import plyvel\nimport cbor2\nfrom nacl import signing\nimport libp2p.abc\n",
                 [r"node/bad.py:1: imports plyvel: plyvel is imported only in medchaind/store/\*",
                  r"node/bad.py:2: .*only in medchaind/codec.py", r"node/bad.py:3: .*only in medchaind/crypto.py",
                  r"node/bad.py:4: .*only in medchaind/net/\*"], id="stack-libraries-have-one-owner"),
    pytest.param("chain/bad.py", "from ..node.node import Node\n",
                 [r"chain/bad.py:1: chain imports medchaind/node/node.py \(node\): not below chain"],
                 id="upward-arrow"),
    pytest.param("store/bad.py", "def f():\n    from .. import ledger\n",
                 [r"store/bad.py:2: store imports medchaind/ledger.py \(ledger\)"], id="upward-arrow-in-function"),
    pytest.param("node/bad.py", "from ..modules.records import fhir\n",
                 [r"node imports medchaind/modules/records/fhir.py \(client\)"], id="node-never-imports-client-side"),
    pytest.param("modules/claims/client.py", "from ...store import ChainStore\nfrom ...ipc import client\n",
                 [r"modules/claims/client.py:1: client imports medchaind/store/__init__.py \(store\)"],
                 id="client-side-reaches-the-node-only-through-ipc"),
    pytest.param("modules/consent/machine.py", "from ..records.encryption import encrypt_record\n",
                 [r"modules imports medchaind/modules/records/encryption.py \(client\)"],
                 id="machine-never-imports-client-side"),
    pytest.param("node/bad.py", "from ..testing import sim\n",
                 [r"node/bad.py:1: node imports medchaind/testing/sim.py: nothing in the package imports testing/"],
                 id="nothing-imports-testing"),
    pytest.param("testing/ok.py", "import trio\nimport plyvel\nfrom ..node.node import Node\n",
                 [r"testing/ok.py:2: .*plyvel is imported only"], id="testing-imports-anything-but-owners-hold"),
    pytest.param("cli/bad.py", "from ..records_gone import x\n",
                 [r"cli/bad.py:1: imports medchaind.records_gone, which does not exist"], id="stale-import"),
    pytest.param("gadgets/new.py", "x = 1\n", [r"medchaind/gadgets/new.py: in no layer"], id="unplaced-file"),
    pytest.param("modules/anchor/console.py", "from ...console.kit import Page\nfrom ..anchor import machine\n", [],
                 id="a-module-console-uses-the-kit"),
    pytest.param("modules/anchor/console.py", "from ...node.queries import ModuleQueries\n",
                 [r"modules/anchor/console.py:1: console views imports medchaind/node/queries.py \(node\)"],
                 id="a-module-console-never-reaches-the-node"),
    pytest.param("modules/anchor/console.py", "from ..records import encryption\n",
                 [r"console views imports medchaind/modules/records/encryption.py \(client\)"],
                 id="a-module-console-never-decrypts"),
    pytest.param("console/kit.py", "from ..console.app import Console\n",
                 [r"console/kit.py:1: console views imports medchaind/console/app.py \(console\)"],
                 id="the-kit-stays-below-the-console"),
]


def test_what_machine_imports_is_pure() -> None:
    files = {
        "modules/demo/__init__.py": "from .machine import DemoModule\n",
        "modules/demo/machine.py": "from .rules import check\nclass DemoModule: ...\n",
        "modules/demo/rules.py": "from .dates import parse\ncheck = parse\n",
        "modules/demo/dates.py": "import datetime\nparse = datetime.date\n",  # reached through rules.py
        "modules/demo/parse_files.py": "import datetime, pathlib\n",  # client side: machine never imports it
    }
    found = [str(v) for v in check(files, context=package_sources().keys())]
    assert found == ["medchaind/modules/demo/dates.py:1: pure layer modules imports datetime (clock)"]
    assert module_client_side(files) == {"modules/demo/parse_files.py"}


@pytest.mark.parametrize(("rel", "source", "expected"), BREACHES)
def test_check_catches_a_breach(rel: str, source: str, expected: list[str]) -> None:
    found = [str(v) for v in check({rel: source}, context=package_sources().keys())]
    print("\n".join(found))
    assert len(found) == len(expected), found
    for pattern, message in zip(expected, found, strict=True):
        assert re.search(pattern, message), (pattern, message)


# ----------------------------------------------------------------- declared dependencies


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_normalized(re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0]) for d in deps}


def test_every_third_party_import_is_declared() -> None:
    """A library the package imports at run time is in ``[project] dependencies``, not
    only present because another dependency pulls it in (anyio came with libp2p)."""
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    missing: set[str] = set()
    for rel, source in package_sources().items():
        for _, module, _ in _imports(rel, ast.parse(source)):
            top = module.split(".")[0]
            if not top or top in (PACKAGE, "__future__") or top in sys.stdlib_module_names:
                continue
            dists = {_normalized(d) for d in distributions.get(top, [top])}
            if not dists & declared:
                missing.add(f"{PACKAGE}/{rel} imports {top} ({', '.join(sorted(dists))})")
    assert not missing, "declare in pyproject.toml [project] dependencies:\n" + "\n".join(sorted(missing))
