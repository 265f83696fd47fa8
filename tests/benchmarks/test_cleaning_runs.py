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
