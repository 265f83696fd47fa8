"""The cleaning and real-film text benchmarks run end to end in their quick settings (timings are never
compared with a target here)."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.inpaint import METHODS
from tests.pipeline import REAL_FILMS

ROOT = Path(__file__).parents[2]


def run(module: str, *args: str) -> None:
    """`python -m benchmarks.MODULE ARGS` from the repository root, as the README runs it."""
    subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], check=True, capture_output=True, text=True,
                   cwd=ROOT)


def test_quick_cleaning_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "cleaning.md"
    run("cleaning", "--quick", "--out", str(out))
    text = out.read_text()
    assert "| method | synthetic PSNR | synthetic texture |" in text
    for method in METHODS:
        assert f"| {method}" in text or f"| **{method}** (default)" in text


@pytest.mark.skipif(not REAL_FILMS.is_dir(), reason="the real Actualmed films are not beside the checkout")
def test_quick_real_text_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "real_text.md"
    run("real_text", "--quick", "--output", str(out))
    text = out.read_text()
    assert "## test films (3 films" in text and "## tune films (3 films" in text
    assert text.count("| default |") == 3  # the settings table and one row per part


def test_true_box_leakage_finds_a_black_fill_and_reads_the_text_free_copies_near_chance(tmp_path):
    from benchmarks.probes import true_box_leakage

    auc = true_box_leakage(["black", None], seed=100, scratch=tmp_path)
    assert auc["black"] >= 0.9  # a black box is the plainest trace there is
    assert abs(auc[None] - 0.5) < 0.2  # identical pictures on both sides: only the probe's own noise


def test_detector_coverage_counts_items_the_grown_boxes_cover():
    from benchmarks.probes import coverage_table, item_coverage
    from datasets.synthetic import ImageTruth
    from datasets.synthetic_text import BurnedText
    from pipeline.text import TextBox

    items = [BurnedText(10, 10, 30, 20, "L", "laterality"), BurnedText(50, 10, 90, 20, "2020", "date")]
    truth = ImageTruth("a.png", "p1", "normal", "x", True, 0.0, "", "clean/a.png", items)
    # the letter is covered once the box grows by 2 px; the date over 22 of its 40 columns (50-70 grown to 72)
    shares = item_coverage([truth], {"a.png": [TextBox(12, 12, 28, 18, 1.0), TextBox(50, 10, 70, 20, 1.0)]})
    assert shares == [("laterality", 1.0), ("date", 0.55)]
    table = {row["kind"]: row for row in coverage_table(shares)}
    assert table["all"] == {"kind": "all", "items": 2, "covered": 1, "mean_share": 0.775}
    assert table["date"]["covered"] == 0 and coverage_table([]) == []
