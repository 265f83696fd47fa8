"""The cleaning benchmark runs end to end in its quick setting (timings are never compared with a target here)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "cleaning.py"


def test_quick_cleaning_benchmark_writes_its_table(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("cleaning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cleaning", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    out = tmp_path / "cleaning.md"
    assert module.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| method | synthetic PSNR | synthetic texture |" in text
    for method in module.METHODS:
        assert f"| {method}" in text or f"| **{method}** (default)" in text
    assert "python benchmarks/cleaning.py --quick --out" in text and "- machine:" in text and "- date:" in text
    row = next(line for line in text.splitlines() if line.startswith("| **texture** (default) |"))
    psnr, texture = (float(cell) for cell in row.split("|")[2:4])
    assert psnr > 15 and texture > 0.3  # the synthetic columns: always measured
    if module.real_films(module.DEFAULT_IMAGES)[0]:  # the real films sit beside the checkout (CI has them)
        assert "Best measured on the tuning films: **" in text and "## Circled markers" in text
