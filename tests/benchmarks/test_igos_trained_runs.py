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


def test_worker_processes_give_the_same_maps_as_one_process(tmp_path):
    """Chunks explained on two spawned processes score exactly as in this process: each image's seed is its place."""
    common = ["--quick", "--images", "4", "--n-test", "6", "--tune-images", "1", "--fast-nodes", "",
              "--work", str(tmp_path / "work")]
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}.md"
        assert module.main([*common, "--workers", workers, "--out", str(out)]) == 0
        results[workers] = json.loads(out.with_suffix(".json").read_text())["configurations"]
    for name, one in results["1"].items():
        two = results["2"][name]
        assert two["images"] == one["images"] == 4
        assert two["deletion_per_image"] == one["deletion_per_image"]
        assert two["insertion_per_image"] == one["insertion_per_image"]
        assert two["forwards_per_image"] == one["forwards_per_image"]
