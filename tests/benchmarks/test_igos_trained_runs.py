"""The trained-classifier iGOS++ benchmark runs end to end in its quick setting (timings are never asserted)."""

import json

import numpy as np

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
    # --render rewrites a stored run's markdown from its JSON alone, exactly as the run wrote it
    stored = tmp_path / "workers1.md"
    assert module.main(["--render", str(stored.with_suffix(".json")), "--out", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == stored.read_text()


def _runs(faithful: list[float], fast: list[float], seconds: tuple[float, float]) -> dict[str, dict]:
    """Part-2 records of two configurations with the given per-image deletion AUCs (insertion equal to faithful's)."""
    def run(deletion: list[float], chunk_seconds: float) -> dict:
        return {"seconds": [chunk_seconds] * len(deletion), "sizes": [1] * len(deletion), "forwards": 1,
                "backwards": 1, "iterations": [10] * len(deletion), "insertion": [0.9] * len(deletion),
                "deletion": deletion}
    return {"faithful": run(faithful, seconds[0]), "fast (n = 3)": run(fast, seconds[1])}


def test_verdict_and_blocks_have_known_answers():
    rng = np.random.default_rng(0)
    faithful = rng.uniform(0.1, 0.3, 60).tolist()
    # block 1: fast equals faithful + 0.002 everywhere (interval of zero width); block 2: ± 0.05 alternately
    fast = [v + 0.002 for v in faithful[:30]] + [v + (0.05 if i % 2 else -0.05) for i, v in enumerate(faithful[30:])]
    summary = module.summarise(_runs(faithful, fast, (60.0, 10.0)))
    rows = module.blocks(summary)
    assert [row[0] for row in rows] == ["1–30", "31–60"]
    assert rows[0][2] == "+0.0020 [+0.0020, +0.0020]" and rows[0][3] == "yes"
    assert rows[1][2].startswith("+0.0000 [-0.0") and rows[1][3] == "no"  # mean 0, interval about ±0.019
    text = module.verdict(summary)  # 60 images: ±0.05 differences on half of them give an interval of about ±0.013
    assert text.startswith("**Missed**") and "6.00× faster" in text and "deletion +0.0010" in text
    assert module.verdict(module.summarise(_runs(faithful, [v + 0.002 for v in faithful], (60.0, 10.0)))
                          ).startswith("**Met**")
    assert module.verdict(module.summarise(_runs(faithful, [v + 0.002 for v in faithful], (40.0, 10.0)))
                          ).startswith("**Missed**: fast (n = 3) is 4.00×")  # agreement without the speed
    assert module.blocks(module.summarise(_runs(faithful[:59], fast[:59], (60.0, 10.0)))) == []  # one block only


def test_render_reads_a_run_stored_before_workers_existed(tmp_path):
    """The stored 30-image diagnosis (one process, no recorded command) renders with its verdict: deletion missed."""
    stored = module.RESULTS / "igos_trained_diagnose.json"
    out = tmp_path / "diagnose.md"
    assert module.main(["--render", str(stored), "--out", str(out)]) == 0
    text = out.read_text()
    assert "1 worker process of 1 torch thread" in text and "(command not recorded)" in text
    assert "**Missed**: fast (n = 3) is 6.05× faster" in text
    assert "deletion +0.0104 [-0.0087, +0.0295] (not inside" in text
    assert "blocks of 30" not in text  # one block only
