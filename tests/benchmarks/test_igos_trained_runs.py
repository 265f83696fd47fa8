"""The trained-classifier iGOS++ benchmark runs end to end in its quick setting (timings are never asserted)."""

import json

from benchmarks import igos_trained as module


def test_quick_benchmark_writes_its_tables(tmp_path):
    out = tmp_path / "trained.md"
    assert module.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--diagnose"]) == 0
    text = out.read_text()
    for row in ("faithful", "fast, riemann", "fast, no early stop", "fast, no warm start", "fast, fresh noise",
                "fast, another seed"):
        assert f"| {row} |" in text
    result = json.loads(out.with_suffix(".json").read_text())
    errors = result["integral_errors"]["final"]
    # the quadrature's own check: 6 Gauss–Legendre nodes are far closer to the 64-node reference than 1 node
    assert errors["gauss-legendre 6"][1] < errors["gauss-legendre 1"][1]
    configurations = result["configurations"]
    assert configurations["faithful"]["images"] == 2
    assert configurations["fast, no early stop"]["iterations_mean"] == module.QUICK["iterations"]  # every one ran
    fast = next(name for name in configurations if name.startswith("fast (n ="))
    assert configurations[fast]["deletion_vs_fast"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 2}  # itself
    assert configurations["fast, another seed"]["deletion_vs_fast"]["n"] == 2
