"""The faithfulness benchmark runs end to end: --quick on synthetic data, and its ImageNet path on a tiny stand-in
(timings and scores are never asserted, only that every table is there with finite numbers)."""

import json
import math

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet18

from benchmarks import faithfulness as benchmark

METHODS = ("iGOS++", "iGOS+", "I-GOS", "Mask", "RISE", "Grad-CAM", "Integrated gradients", "Gradient")
KEYS = ("igos/insertion", "igos/deletion", "rise/insertion", "rise/deletion")


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def check_main_table(numbers: dict, sizes_of_mask_methods: set[str]) -> None:
    """Every method has finite mean insertion/deletion AUCs for both protocols at its sizes."""
    assert set(numbers) == set(METHODS)
    for method, by_size in numbers.items():
        if method in ("iGOS++", "iGOS+", "I-GOS", "Mask"):
            assert set(by_size) == sizes_of_mask_methods, method
        else:
            assert len(by_size) == 1, method
        for entry in by_size.values():
            for key in KEYS:
                assert finite(entry[key]["mean"]) and 0 <= entry[key]["mean"] <= 1, (method, key, entry[key])
            assert finite(entry["seconds_per_image"])


def test_quick_synthetic_run_writes_every_table(tmp_path):
    out = tmp_path / "faithfulness.md"
    assert benchmark.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("## Models", "## Insertion / deletion", "### small_cnn", "### resnet18", "## Ablations",
                    "## Fast vs faithful iGOS++", "## Ground truth", "## Sanity check"):
        assert heading in text, heading
    assert "Protocol `igos`" in text and "Protocol `rise`" in text
    for method in METHODS:
        assert text.count(f"| {method} |") >= 4, method  # two protocol tables, the ground truth, the sanity table
    for row in ("| Insertion (I-GOS with −S_ins) |", "| iGOS++ (no noise: noise_std 0) |",
                "| iGOS++ (fixed step: no line search, step 8) |", "| iGOS++ (no BTV: plain TV instead) |"):
        assert row in text, row
    assert "| igos |" in text and "| rise |" in text  # fast vs faithful rows, each with a verdict
    assert "python -m benchmarks.faithfulness --quick" in text and "total wall time" in text

    numbers = json.loads(out.with_suffix(".json").read_text())
    for arch in ("small_cnn", "resnet18"):
        check_main_table(numbers["main"][arch], {"32", "28", "14", "7"})
        assert [row["method"] for row in numbers["truth"][arch]][:8] == list(METHODS)
        for row in numbers["truth"][arch][:8]:
            assert finite(row["lesion_mass"]["mean"]) and finite(row["text_mass"]["mean"]), row
    assert len(numbers["ablation"]) == 7 * 2
    assert all(finite(entry["igos/insertion"]["mean"]) for entry in numbers["ablation"].values())
    assert finite(numbers["modes"]["difference"]["igos/insertion"]["mean"])
    assert set(numbers["modes"]["passes"]) == {"igos", "rise"}
    assert finite(numbers["modes_at_library_defaults"]["difference"]["igos/deletion"]["mean"])
    assert text.count("| within 0.01 on both? |") == 2  # the run's K, N and the library's 20, 15
    assert [row["method"] for row in numbers["sanity"]] == list(METHODS)
    assert all(len(row["steps"]) == 5 for row in numbers["sanity"])
    for row in numbers["sanity"]:  # every map compared: a finite ρ, or counted as constant
        assert all(finite(step["mean"]) or step["constant"] == 2 for step in row["steps"].values()), row
    assert numbers["settings"]["iterations"] == 2 and finite(numbers["seconds"])


def test_imagenet_path_on_a_tiny_stand_in(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate([(48, 40), (40, 56), (44, 44)]):
        pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{index:08d}.png")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "imagenet.md"
    argv = ["--imagenet", str(folder), "--weights", str(weights), "--arch", "resnet18", "--image-size", "28",
            "--mask-sizes", "7,14",
            "--images", "2", "--iterations", "2", "--ig-steps", "2", "--mask-iterations", "2", "--rise-masks", "8",
            "--ig-baseline-steps", "2", "--ablation-images", "2", "--igos-metric-steps", "8",
            "--rise-metric-steps", "8", "--explain-batch", "2", "--threads", "1", "--work", str(tmp_path / "work"),
            "--out", str(out)]
    assert benchmark.main(argv) == 0
    text = out.read_text()
    assert "| method | 28 del | 28 ins | 14 del | 14 ins | 7 del | 7 ins |" in text
    for method in METHODS:
        assert f"| {method} |" in text, method
    assert "| iGOS++ (no BTV: plain TV instead) |" in text
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["model"]["images"] == 2 and numbers["settings"]["image_size"] == 28
    check_main_table(numbers["main"]["resnet18"], {"28", "14", "7"})
    assert len(numbers["ablation"]) == 7
    assert all(finite(entry["igos/deletion"]["mean"]) for entry in numbers["ablation"].values())
