"""No module of the sidecar imports a module of a higher layer (read from the source with ast,
every import counted: top-level, inside functions, under TYPE_CHECKING).

The layers, lowest first. A module may import its own layer and the layers below. Components
(receivers, processors, exporters, extensions) may not import one another: what they share
sits below them (component/ for contracts, config/ for shared settings, the domain libraries).
"""

from __future__ import annotations

import ast
from pathlib import Path

import costctx

PACKAGE_ROOT = Path(costctx.__file__).parent

LAYERS: list[tuple[str, frozenset[str]]] = [
    ("data and config types", frozenset({"pdata", "proto_gen", "config"})),
    ("domain libraries", frozenset({"envelope", "normalize", "pricing", "budget", "survival", "telemetry",
                                    "transport", "client", "attribution"})),
    ("component contract", frozenset({"component"})),
    ("components", frozenset({"receivers", "processors", "exporters", "extensions"})),
    ("service", frozenset({"service"})),
    ("command line", frozenset({"cli", "__main__"})),
]
COMPONENT_KINDS = LAYERS[3][1]


def layer_of(package: str) -> int:
    for index, (_, packages) in enumerate(LAYERS):
        if package in packages:
            return index
    raise AssertionError(f"costctx.{package} is in no layer: add it to LAYERS in {__file__}")


def top_package(module: str) -> str | None:
    """`costctx.pricing.book` -> `pricing`; None for a module outside costctx or the package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "costctx" and len(parts) > 1 else None


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        relative = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
        found.append((".".join(relative.parts).removesuffix(".__init__"), path))
    return found


def imported(module: str, path: Path) -> set[str]:
    """Absolute names of the costctx modules `module` imports."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return {n for n in names if n == "costctx" or n.startswith("costctx.")}


def violations() -> list[str]:
    found = []
    for module, path in modules():
        own = top_package(module)
        if own is None:
            continue  # costctx/__init__.py
        for target in sorted(imported(module, path)):
            theirs = top_package(target)
            if theirs is None or theirs == own:
                continue
            if layer_of(theirs) > layer_of(own):
                found.append(f"{module} imports {target}: {LAYERS[layer_of(own)][0]} -> {LAYERS[layer_of(theirs)][0]}")
            elif own in COMPONENT_KINDS and theirs in COMPONENT_KINDS:
                found.append(f"{module} imports {target}: one component kind importing another")
    return found


def test_every_package_has_a_layer() -> None:
    for module, _ in modules():
        package = top_package(module)
        if package is not None:
            layer_of(package)


def test_no_module_imports_a_higher_layer() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch) -> None:
    """The check itself: a domain module importing a processor is reported."""
    fake = tmp_path / "costctx"
    (fake / "pricing").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "pricing" / "__init__.py").write_text("")
    (fake / "pricing" / "explain.py").write_text(
        "from costctx.processors.price.processor import PriceProcessor\nfrom ..pdata import TraceBatch\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE_ROOT", fake)
    assert violations() == [
        "costctx.pricing.explain imports costctx.processors.price.processor: domain libraries -> components"
    ]
