"""The speed benchmark runs end to end in its quick setting (timings are never asserted)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "igos_speed.py"


def test_quick_benchmark_writes_its_table(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("igos_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "igos_speed", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    out = tmp_path / "speed.md"
    assert module.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| igos++ | fast |" in text and "| igos | faithful |" in text
    assert "differs" not in text  # counted passes follow the structure of spec §8
