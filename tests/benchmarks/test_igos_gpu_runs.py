"""The GPU benchmark runs end to end in its quick CPU setting (timings are never asserted)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "igos_gpu.py"


@pytest.fixture
def benchmark(monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("igos_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "igos_gpu", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_gpu_benchmark_writes_its_report(benchmark, tmp_path):
    out = tmp_path / "gpu.md"
    assert benchmark.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    for row in ("| fp32, batch 1 |", "| fp32, batch 2 |", "| bf16, batch 2 |", "| bf16 + channels-last, batch 4 |",
                "| bf16 + channels-last, batch 2, other seed |"):
        assert text.count(row) == 2, row  # one throughput row, one quality row
    assert "differs" not in text  # counted passes follow the structure of spec §8
    assert "python benchmarks/igos_gpu.py --quick --out" in text
    assert "GPU vs CPU: skipped" in text and "torch.compile, batch 2: skipped" in text


def test_budget_skips_the_remaining_settings_and_says_so(benchmark, tmp_path):
    out = tmp_path / "gpu.md"
    assert benchmark.main(["--quick", "--budget-seconds", "0", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| fp32, batch 1 |" in text  # the first setting always runs
    assert "fp32, batch 2: skipped, predicted" in text and "would exceed --budget-seconds 0" in text
