"""The GPU benchmark runs end to end in its quick CPU setting (timings are never asserted)."""

from benchmarks import igos_gpu as benchmark


def test_quick_gpu_benchmark_writes_its_report(tmp_path):
    out = tmp_path / "gpu.md"
    assert benchmark.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    for row in ("| fp32, batch 1 |", "| fp32, batch 2 |", "| bf16, batch 2 |", "| bf16 + channels-last, batch 4 |",
                "| bf16 + channels-last, batch 2, other seed |"):
        assert text.count(row) == 2, row  # one throughput row, one quality row
    assert "differs" not in text  # counted passes follow the structure of docs/igos.md §8
    assert "python -m benchmarks.igos_gpu --quick --out" in text
    assert "GPU vs CPU: skipped" in text and "torch.compile, batch 2: skipped" in text


def test_budget_skips_the_remaining_settings_and_says_so(tmp_path):
    out = tmp_path / "gpu.md"
    assert benchmark.main(["--quick", "--budget-seconds", "0", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| fp32, batch 1 |" in text  # the first setting always runs
    assert "fp32, batch 2: skipped, predicted" in text and "would exceed --budget-seconds 0" in text
