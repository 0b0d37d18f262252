"""The package's layers hold: every module has a place in ``LAYERS``, imports only from its own layer's package
or from lower layers, no two modules import each other (even through others), and no module reaches for
another's private names. Every import counts, inside functions too. CONTRIBUTING.md shows the same table."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "affectlab"

# module (relative to affectlab; "" is the package itself) -> layer. A module imports only from lower layers;
# within one layer only inside SAME_LAYER_PACKAGES (data/, models/, recipes/ import their siblings), and
# data/ and models/ share a layer so that neither imports the other.
LAYERS = {
    "": 0, "paths": 0, "labels": 0,
    "rng": 0, "epoch_table": 1, "metrics": 1, "losses": 1, "cache": 1,
    "data": 2, "data.report": 2, "data.clean": 2, "data.faces_draw": 2, "data.timeline": 2,
    "data.static_synth": 2, "data.synth": 2, "data.roots": 2, "data.abaw": 2, "data.hume": 2,
    "data.static": 2, "data.loaders": 2, "data.editions": 2, "data.mimicry": 2,
    "models": 2, "models.backbones": 2, "models.facechannel": 2, "models.facernet": 2, "models.pretrain": 2,
    "models.scan": 2, "models.senet": 2, "models.temporal_stat": 2,
    "checkpoint": 3,
    "train": 4,
    "distributed": 5,
    "recipes": 6, "recipes.pretrain": 6, "recipes.facechannel": 6, "recipes.facernet": 6, "recipes.scan": 6,
    "recipes.senet": 6, "recipes.temporal": 6,
    "claims": 7,
    "course": 8, "checks": 8,
    "spread": 9, "fit": 9, "results": 9, "submit": 9,
    "explain": 10, "realface": 10,
    "faces": 11,
    "video": 12,
    "frames": 13,
}
SAME_LAYER_PACKAGES = ("data", "models", "recipes")


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _module(dotted: str) -> str | None:
    """``affectlab.x.y`` -> the package's module ``x.y`` ("" for the package itself), None if not affectlab's."""
    if dotted != "affectlab" and not dotted.startswith("affectlab."):
        return None
    rel = dotted[len("affectlab."):] if dotted != "affectlab" else ""
    while rel and rel not in MODULES:   # ``x.y.NAME`` -> ``x.y``
        rel = rel.rpartition(".")[0]
    return rel


def _dotted(mod: str) -> str:
    return f"affectlab.{mod}" if mod else "affectlab"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _scan(name: str) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """(line, module imported) for every import of the package's modules in ``name``'s file, and (line,
    module, what) for every private name it takes from another module (``from m import _x`` or ``m._x``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imports, private = [], []
    bound: dict[str, str] = {}   # local name -> the package's module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                mod = _module(a.name)
                if mod is None:
                    continue
                imports.append((node.lineno, mod))
                if a.asname:
                    bound[a.asname] = mod
                else:
                    bound.setdefault(a.name.split(".")[0], "")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: resolve against this module's package
                up = package.split(".") if package else []
                up = up[:len(up) - (node.level - 1)]
                base = ".".join(["affectlab", *up] + ([base] if base else []))
            mod = _module(base)
            if mod is None:
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}" if mod else a.name
                if sub in MODULES:
                    imports.append((node.lineno, sub))
                    bound[a.asname or a.name] = sub
                else:
                    imports.append((node.lineno, mod))
                    if _is_private(a.name):
                        private.append((node.lineno, mod, f"from {_dotted(mod)} import {a.name}"))
    for node in ast.walk(tree):   # ``faces._as_rgb`` after ``from affectlab import faces``
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                mod = bound[value.id]
                for attr in chain:
                    nxt = f"{mod}.{attr}" if mod else attr
                    if nxt not in MODULES:
                        break
                    mod = nxt
                else:
                    if mod != name:
                        private.append((node.lineno, mod, f"{ast.unparse(node)} ({_dotted(mod)})"))
    return [(line, m) for line, m in imports if m != name], private


SCANS = {name: _scan(name) for name in MODULES}


def _where(name: str, line: int) -> str:
    return f"{MODULES[name].relative_to(SRC.parents[1])}:{line}"


def _package(name: str) -> str:
    return name.split(".")[0]


def test_every_module_has_a_layer():
    unplaced = sorted(set(MODULES) - set(LAYERS))
    assert not unplaced, (f"modules without a layer: {unplaced}; add each to LAYERS here and to the table in "
                          f"CONTRIBUTING.md")
    gone = sorted(set(LAYERS) - set(MODULES))
    assert not gone, f"LAYERS names modules that no longer exist: {gone}"


def test_imports_go_down_the_layers():
    bad = []
    for name, (imports, _) in SCANS.items():
        for line, target in imports:
            if target not in LAYERS or name not in LAYERS:
                continue   # reported by test_every_module_has_a_layer
            up = LAYERS[target] > LAYERS[name]
            sideways = (LAYERS[target] == LAYERS[name] and target != ""
                        and not (_package(name) == _package(target) and _package(name) in SAME_LAYER_PACKAGES))
            if up or sideways:
                bad.append(f"{_where(name, line)}: {_dotted(name)} (layer {LAYERS[name]}) imports "
                           f"{_dotted(target)} (layer {LAYERS[target]})")
    assert not bad, "imports against the layers (CONTRIBUTING.md, 'The layers'):\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {name: sorted({t for _, t in imports}) for name, (imports, _) in SCANS.items()}
    done: set[str] = set()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt in path or nxt == node:
                cycles.append(" -> ".join(map(_dotted, path[path.index(nxt):] + [node, nxt]
                                              if nxt in path else [node, nxt])))
            elif nxt not in done:
                visit(nxt, path + [node])
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_takes_another_modules_private_names():
    bad = [f"{_where(name, line)}: {what}" for name, (_, private) in SCANS.items() for line, _, what in private]
    assert not bad, ("private names used across modules (make them public where they belong, or move the "
                     "code):\n" + "\n".join(bad))


@pytest.mark.parametrize("source, expected", [
    ("from affectlab.faces import _as_rgb\n", ["faces"]),
    ("from affectlab import faces\nfaces._as_rgb(1)\n", ["faces"]),
    ("import affectlab.data.static as s\ns._dirs\n", ["data.static"]),
    ("import affectlab.data.static\naffectlab.data.static._dirs\n", ["data.static"]),
    ("def f():\n    from ..data.static import _dirs\n", ["data.static"]),
    ("import affectlab\naffectlab.__version__\nfrom affectlab.faces import as_rgb as _x\n", []),
])
def test_the_scanner_sees_private_names(monkeypatch, source, expected, tmp_path):
    """The scanner itself: every spelling of another module's private name is caught (inside functions and
    relative too); dunders and private aliases of public names are not."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    monkeypatch.setitem(MODULES, "recipes.probe", probe)
    assert [mod for _, mod, _ in _scan("recipes.probe")[1]] == expected
