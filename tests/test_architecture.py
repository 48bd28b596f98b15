"""The dependency rule of docs/architecture.md: the library never imports the application (``monai_meep.apps``).

Every module of the library is read with ``ast`` (not imported, so an import inside a function, behind a flag or
under ``TYPE_CHECKING`` counts as well) and each ``import`` / ``from ... import`` is resolved to an absolute module
name, relative ones included. The checker itself is tested on synthetic sources, so a rule that can never fail
cannot pass unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monai_meep"
APPLICATION = "monai_meep.apps"
# the library: every module of monai_meep outside apps/ (the root __init__ included: `import monai_meep` loads it)
LIBRARY_PACKAGES = (
    "calibration",
    "handlers",
    "inferers",
    "kernels",
    "losses",
    "metrics",
    "report",
    "transforms",
    "visualize",
)
LIBRARY_MODULES = ("__init__.py", "_version.py", "dist.py", "enums.py", "utils.py")


def module_name(path: Path, root: Path = PACKAGE) -> tuple[str, bool]:
    """Dotted name of the module at ``path`` under the package folder ``root``, and whether it is a package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of every module ``source`` (the text of ``module``) imports, anywhere in the file.

    ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule); relative imports are resolved against
    ``module`` (its own name when it is a package's ``__init__``).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{module}: relative import beyond the top-level package (level {node.level}).")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def application_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``source`` that reach into the application, sorted."""
    return sorted(
        m for m in imported_modules(source, module, is_package) if m == APPLICATION or m.startswith(APPLICATION + ".")
    )


def library_files() -> list[Path]:
    files = [PACKAGE / name for name in LIBRARY_MODULES]
    for name in LIBRARY_PACKAGES:
        files.extend(sorted((PACKAGE / name).rglob("*.py")))
    return files


def test_the_library_list_covers_every_module_outside_apps():
    """A new top-level package or module is either library (listed above) or application (under apps/)."""
    top = {p.name for p in PACKAGE.iterdir() if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"}
    assert top == {*LIBRARY_PACKAGES, *LIBRARY_MODULES, "apps"}
    assert all(p.is_file() for p in library_files())


def test_the_library_never_imports_the_application():
    offenders = {}
    for path in library_files():
        module, is_package = module_name(path)
        bad = application_imports(path.read_text(encoding="utf-8"), module, is_package)
        if bad:
            offenders[path.relative_to(PACKAGE.parent).as_posix()] = bad
    assert not offenders, f"library modules import the application ({APPLICATION}): {offenders}"


def test_the_application_is_where_the_rule_expects_it():
    """The rule guards something: the application exists and does import the library."""
    apps = sorted((PACKAGE / "apps").rglob("*.py"))
    assert apps
    reached = set()
    for path in apps:
        reached |= imported_modules(path.read_text(encoding="utf-8"), *module_name(path))
    assert any(m.startswith("monai_meep.losses") for m in reached)


# (source, module it is the text of, whether that module is a package's __init__, imports the application)
CHECKER_CASES = [
    ("import monai_meep.apps.data\n", "monai_meep.losses.meep", False, True),
    ("from monai_meep.apps.bundle import support\n", "monai_meep.metrics.histogram", False, True),
    ("from monai_meep import apps\n", "monai_meep.utils", False, True),
    ("def f():\n    from monai_meep.apps.loss_factory import build_loss\n", "monai_meep.losses.ace", False, True),
    ("from ..apps import data\n", "monai_meep.handlers.reliability", False, True),
    ("from .. import apps\n", "monai_meep.report.core", False, True),
    ("from .apps.experiments import stats\n", "monai_meep", True, True),
    ("from ...apps.phantoms import la\n", "monai_meep.metrics._impl.x", False, True),
    ("if TYPE_CHECKING:\n    import monai_meep.apps as a\n", "monai_meep.calibration", True, True),
    ("import monai.apps\nfrom monai.apps import download_url\n", "monai_meep.losses.meep", False, False),
    ("from .histogram import CalibrationHistogram\n", "monai_meep.metrics", True, False),
    ("from ..utils import atomic_open\n", "monai_meep.handlers.checkpoint", False, False),
    ("import monai_meep.applications_elsewhere\n", "monai_meep.utils", False, False),
    ("from monai_meep.metrics import apps_total\n", "monai_meep.report.core", False, False),
]


@pytest.mark.parametrize(("source", "module", "is_package", "reaches_apps"), CHECKER_CASES)
def test_the_checker_tells_application_imports_from_library_imports(source, module, is_package, reaches_apps):
    """The checker can fail: it flags each way of importing the application, and nothing else."""
    assert bool(application_imports(source, module, is_package)) is reaches_apps


def test_relative_imports_resolve_like_python():
    assert imported_modules("from . import x\n", "monai_meep.a.b") == {"monai_meep.a", "monai_meep.a.x"}
    assert imported_modules("from . import x\n", "monai_meep.a", is_package=True) == {"monai_meep.a", "monai_meep.a.x"}
    assert "monai_meep.y" in imported_modules("from ..y import z\n", "monai_meep.a.b")
    with pytest.raises(ValueError, match="beyond the top-level package"):
        imported_modules("from ... import x\n", "monai_meep.a")


def test_module_names(tmp_path):
    root = tmp_path / "monai_meep"
    assert module_name(root / "metrics" / "__init__.py", root) == ("monai_meep.metrics", True)
    assert module_name(root / "metrics" / "histogram.py", root) == ("monai_meep.metrics.histogram", False)
    assert module_name(root / "__init__.py", root) == ("monai_meep", True)


def module_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through ``edges`` (module -> modules it imports), sorted."""
    reach: dict[str, set[str]] = {}
    for start in edges:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    groups = {frozenset({a} | {b for b in reach[a] if a in reach.get(b, ())}) for a in edges if a in reach[a]}
    return sorted(sorted(g) for g in groups)


def test_no_import_cycles_between_library_modules():
    """No two library modules import each other, also lazily inside a function (docs/architecture.md): shared
    helpers go to a module both import (e.g. ``losses.targets`` for ``losses.functional`` and
    ``kernels.meep_cpu``). Package ``__init__`` re-exports are left out: they only gather their modules."""
    files = {}
    for path in library_files():
        module, is_package = module_name(path)
        if not is_package:
            files[module] = path
    edges = {
        m: {t for t in imported_modules(p.read_text(encoding="utf-8"), m) if t in files and t != m}
        for m, p in files.items()
    }
    assert not module_cycles(edges), f"library modules that import each other: {module_cycles(edges)}"


def test_the_cycle_finder_finds_cycles():
    assert module_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert module_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert module_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
