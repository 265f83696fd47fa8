"""benchmarks.real_probes' within-film leakage design on made-up films: the mirror place, the pairs it leaves out,
and a planted cue the probe must find (the end-to-end run on the real films is the benchmark itself)."""

import numpy as np

from benchmarks.real_probes import Film, leakage_pictures, leakage_row, mirrored, patient_split
from pipeline.probes import ProbeConfig
from pipeline.text import TextBox


def film(index: int, *, marked: bool = True, other: tuple[int, int, int, int] | None = None) -> Film:
    """A 128-px noise film of patient `index` with, when `marked`, a white square "marker" at (10, 10)-(26, 26)."""
    rng = np.random.default_rng(index)
    image = np.clip(0.5 + 0.1 * rng.standard_normal((128, 128)), 0, 1).astype(np.float32)
    if marked:
        image[10:26, 10:26] = 1.0
    annotated = ((10, 10, 26, 26),) + ((other,) if other else ())
    return Film(f"f{index}.png", f"p{index}", "COVID-19" if index % 2 else "No finding", "AP", image,
                (TextBox(10, 10, 26, 26, 1.0),), annotated)


def test_the_mirror_place_is_the_left_right_reflection():
    assert mirrored((10, 20, 30, 40), 128) == (98, 20, 118, 40)


def test_a_box_whose_mirror_place_holds_text_gives_no_pair():
    assert len(leakage_pictures(film(0), None)) == 2
    assert leakage_pictures(film(0, other=(100, 12, 120, 24)), None) == []


def test_the_probe_finds_text_left_in_and_not_a_perfect_fill():
    films = [film(index) for index in range(40)]
    split = patient_split(films, seed=0)
    assert sorted(split.values()).count("train") == 20
    config = ProbeConfig(image_size=32, work_size=32, epochs=6, n_resamples=0, seed=0)
    assert leakage_row(films, split, None, config)["auc"] >= 0.95
    perfect = {f.name: film(index, marked=False).image for index, f in enumerate(films)}
    assert abs(leakage_row(films, split, perfect, config)["auc"] - 0.5) < 0.25
