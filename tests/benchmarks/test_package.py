"""benchmarks/ is a package run as `python -m benchmarks.NAME`: no module edits sys.path or imports the tests, and
each script (a module with a `__main__` guard; the others are parts of a long script, e.g. faults_trial.py) names
that command in its docstring (checked on the source, nothing is run)."""

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
MODULES = sorted(path for path in BENCHMARKS.glob("*.py") if path.stem != "__init__")


def is_script(path: Path) -> bool:
    """Whether the module runs as a script: it has an `if __name__ == "__main__":` block."""
    return any(isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
               for node in ast.parse(path.read_text(encoding="utf-8")).body)


SCRIPTS = [path for path in MODULES if is_script(path)]


def test_every_script_is_found():
    assert len(SCRIPTS) >= 10 and (BENCHMARKS / "__init__.py").is_file()


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_sys_path_and_no_test_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            pytest.fail(f"{path.name}:{node.lineno} uses sys.path")
        modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                   else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(module.split(".")[0] in ("tests", "importlib") and module != "importlib.metadata"
                       for module in modules), f"{path.name}:{node.lineno} imports {modules}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_docstring_shows_the_module_command(path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert f"python -m benchmarks.{path.stem}" in doc and f"python benchmarks/{path.name}" not in doc
