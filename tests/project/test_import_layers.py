"""No module of the library imports from a layer above its own (the layers of ARCHITECTURE.md), and the library
never imports the research code in experiments/."""

import ast
import os
import re

import pytest

from tests.support import ROOT  # noqa: E402


def read_layers() -> list[tuple[str, list[str]]]:
    """``[(layer, [module path prefixes])]`` from the layers table, top layer first."""
    text = open(os.path.join(ROOT, "ARCHITECTURE.md"), encoding="utf-8").read()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("layer", "") or set(cells[0]) <= {"-"}:
            continue
        layers.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return layers


def module_name(path: str) -> str:
    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def prefix_module(prefix: str) -> str:
    return prefix.rstrip("/").removesuffix(".py").replace("/", ".").removesuffix(".__init__")


def layer_of(module: str, layers) -> int | None:
    """The index of the layer whose most specific entry covers ``module`` (0 is the top)."""
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            entry = prefix_module(prefix)
            exact = prefix.endswith("__init__.py")  # a package's own module, not what is inside it
            covers = module == entry or (not exact and module.startswith(entry + "."))
            if covers and entry.count(".") > depth:
                best, depth = index, entry.count(".")
    return best


def library_files():
    for package in ("nabla_jax", "convert"):
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            yield from (os.path.join(directory, f) for f in sorted(files) if f.endswith(".py"))


def imports(path: str):
    """Absolute module names ``path`` imports, anywhere in the file (functions included)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_table_covers_every_module():
    layers = read_layers()
    assert len(layers) >= 8, layers
    uncovered = [module_name(f) for f in library_files() if layer_of(module_name(f), layers) is None]
    assert not uncovered, f"modules in no layer of ARCHITECTURE.md: {uncovered}"


def test_no_module_imports_from_a_layer_above_its_own():
    layers = read_layers()
    upward = []
    for path in library_files():
        source = module_name(path)
        own = layer_of(source, layers)
        for target in imports(path):
            if target.split(".")[0] == "experiments":
                upward.append(f"{source} imports the research code {target}")
                continue
            if target.split(".")[0] not in ("nabla_jax", "convert"):
                continue
            # "from nabla_jax.x import name" also yields nabla_jax.x.name: a module there, else the package's name
            found = layer_of(target, layers)
            if None not in (found, own) and found < own:
                upward.append(f"{source} ({layers[own][0]}) imports {target} ({layers[found][0]})")
    assert not upward, "imports from a layer above:\n" + "\n".join(sorted(set(upward)))


@pytest.mark.parametrize("module", ["nabla_jax.rewards", "nabla_jax.evaluation"])
def test_packages_have_no_lazy_attribute_hooks(module):
    path = os.path.join(ROOT, *module.split("."), "__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)


def module_scope_graph() -> dict[str, set[str]]:
    """Library module -> the library modules it imports when it is first imported (module scope only).
    ``from package import submodule`` is an edge to the submodule alone."""
    modules = {module_name(f): f for f in library_files()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.parse(open(path, encoding="utf-8").read(), path).body:
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                inside = [f"{node.module}.{alias.name}" for alias in node.names]
                edges.update(n for n in inside if n in modules)
                if any(n not in modules for n in inside):
                    edges.add(node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_no_import_cycle():
    graph = module_scope_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
