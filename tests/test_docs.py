"""Every relative link in the project's Markdown resolves: the file exists and, for `#anchor`, a heading of that
file has that anchor (GitHub's rule: lower case, punctuation but `-` and `_` dropped, spaces to hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SKIPPED = {".venv", ".git", ".pytest_cache", ".ruff_cache", "runs", "node_modules"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def markdown_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.md") if not SKIPPED & set(path.relative_to(ROOT).parts))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation removed, lower case, spaces as hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(path: Path) -> set[str]:
    return {anchor(heading) for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_anchors_follow_githubs_rule():
    assert anchor("What `make demo` shows") == "what-make-demo-shows"
    assert anchor("2. Who imports whom") == "2-who-imports-whom"
    assert anchor("Text detection and COVIDx++") == "text-detection-and-covidx"
    assert anchor("The `run_dir` folder") == "the-run_dir-folder"


def test_the_check_finds_a_broken_file_and_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#missing) [gone](other.md) [web](https://example.org)\n"
                    "```\n[in code](nowhere.md)\n```\n", encoding="utf-8")
    assert links(page) == ["#title", "#missing", "other.md"]
    assert anchors(page) == {"title"}


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path):
    broken = []
    for target in links(path):
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment.lower() not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{fragment}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)
