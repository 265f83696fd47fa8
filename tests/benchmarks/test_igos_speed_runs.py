"""The speed benchmark runs end to end in its quick setting (timings are never asserted)."""

from benchmarks import igos_speed as module


def test_quick_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "speed.md"
    assert module.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| igos++ | fast |" in text and "| igos | faithful |" in text
    assert "differs" not in text  # counted passes follow the structure of docs/igos.md §8
