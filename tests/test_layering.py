"""Who may import whom (docs/architecture.md §2), checked on the source files' import statements."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PROJECT = {"igos", "datasets", "pipeline", "flows", "reports"}
ALLOWED = {
    "igos": set(),
    "datasets": set(),
    "reports": {"datasets"},  # file I/O helpers only: a report reads a run folder, never runs a stage
    "pipeline": {"igos", "datasets"},
    "flows": {"pipeline", "reports", "datasets"},
}
FORBIDDEN_THIRD_PARTY = {"igos": {"pandas", "cv2", "pydicom", "prefect", "matplotlib"}, "pipeline": {"prefect"}}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_architecture(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = imported_top_levels(path)
        wrong = (imported & PROJECT) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        banned = imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(ROOT)} imports {sorted(banned)}"
