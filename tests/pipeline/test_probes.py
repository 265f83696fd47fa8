"""The probes (pipeline.probes) on tiny films with planted cues: each finds its cue and is at chance without it."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from datasets.covidx import Record
from datasets.errors import DatasetError, ImageReadError, PatientLeakError
from datasets.synthetic_radiograph import chest_radiograph
from pipeline.probes import (
    ProbeConfig,
    ProbeError,
    ProbeFilm,
    films_from_records,
    label_from_source,
    leakage_probe,
    lung_field_mask,
    render_view,
    source_probes,
)
from pipeline.probes.views import blur, prior_lungs

SIZE = 64
CONFIG = ProbeConfig(image_size=32, work_size=SIZE, epochs=10, batch_size=16, n_resamples=300, seed=0)
# The whole-film leakage probe at full size: a flattened box is a fine-grained trace that halving the film blurs away.
LEAK_CONFIG = replace(CONFIG, image_size=SIZE)
MARKER = (slice(4, 16), slice(4, 16))  # top-left corner, 12 × 12
CENTRE = (slice(26, 38), slice(14, 26))  # inside the left "lung" of LUNGS
LUNGS = np.zeros((SIZE, SIZE), bool)
LUNGS[16:48, 8:28] = LUNGS[16:48, 36:56] = True


def checkerboard(value: float = 0.4) -> np.ndarray:
    """A zero-mean 12 × 12 pattern of 2-px cells (±value): the heavy blur all but removes it."""
    cells = (np.indices((6, 6)).sum(axis=0) % 2) * 2 - 1
    return np.kron(cells, np.ones((2, 2))).astype(np.float32) * value


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random film (SIZE, SIZE) around mid-grey with pixel noise."""
    coarse = rng.uniform(0.35, 0.65, (4, 4)).astype(np.float32)
    smooth = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 0.03, (SIZE, SIZE)), 0.05, 0.95).astype(np.float32)


def save(path, image: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
    return path


def make_films(tmp_path, *, where=MARKER, cue: bool = True, n_train: int = 80, n_test: int = 60, seed: int = 0,
               boxes=((4, 4, 16, 16),), lungs: np.ndarray | None = None) -> list[ProbeFilm]:
    """Two sources, a and b, one film per patient; source a's films carry the checkerboard at `where` (when `cue`).
    Each film's COVIDx++ copy is the film without the marker."""
    rng = np.random.default_rng(seed)
    films = []
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        source = "ab"[index % 2]
        clean = background(rng)
        image = clean.copy()
        if cue and source == "a":
            image[where] = np.clip(image[where] + checkerboard(), 0, 1)
        name = f"{split}-{index:03d}.png"
        path = save(tmp_path / "films" / name, image)
        cleaned = save(tmp_path / "cleaned" / name, clean)
        films.append(ProbeFilm(name, f"p{index}", "normal", source, split, path, tuple(boxes), lungs, cleaned))
    return films


def test_probe_finds_a_planted_corner_marker(tmp_path):
    result = source_probes(make_films(tmp_path), views=("whole",), config=CONFIG)
    row = result.table.set_index("stratum").loc["all"]
    assert row.auc >= 0.9 and row.ci_low > 0.6
    assert result.sources == ("a", "b") and (result.n_train, result.n_test) == (80, 60)
    assert set(result.table.stratum) == {"all", "a", "b"} and row.n == 60


def test_probe_is_at_chance_without_a_cue(tmp_path):
    result = source_probes(make_films(tmp_path, cue=False), views=("whole",), config=CONFIG)
    row = result.table.set_index("stratum").loc["all"]
    assert 0.3 <= row.auc <= 0.7
    assert row.ci_low <= 0.5 <= row.ci_high


def test_each_view_sees_what_it_should(tmp_path):
    """text_only: the marker inside the boxes is found, outside them it is gone (the blur baseline all but removes a
    zero-mean pattern); lungs_masked: a marker in the corner stays, one in the lungs is gone; cleaned: gone."""
    corner = make_films(tmp_path / "corner", lungs=LUNGS)
    result = source_probes(corner, views=("text_only", "lungs_masked", "cleaned"), config=CONFIG)
    assert result.auc("text_only") >= 0.9 and result.auc("lungs_masked") >= 0.9
    assert 0.3 <= result.auc("cleaned") <= 0.7
    elsewhere = make_films(tmp_path / "elsewhere", boxes=((40, 44, 60, 60),), lungs=LUNGS)
    in_lungs = make_films(tmp_path / "lungs", where=CENTRE, lungs=LUNGS)
    assert 0.3 <= source_probes(elsewhere, views=("text_only",), config=CONFIG).auc("text_only") <= 0.7
    assert 0.3 <= source_probes(in_lungs, views=("lungs_masked",), config=CONFIG).auc("lungs_masked") <= 0.7


def test_text_only_view_keeps_the_boxes_and_blurs_the_rest(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (SIZE, SIZE)).astype(np.uint8)
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), image)
    pixels = image.astype(np.float32) / 255
    film = ProbeFilm("film.png", "p", "normal", "a", "test", path, ((5, 7, 20, 15), (50, 60, 70, 70)))
    view = render_view(film, "text_only", SIZE, work_size=SIZE)
    inside = np.zeros((SIZE, SIZE), bool)
    inside[7:15, 5:20] = inside[60:64, 50:64] = True
    np.testing.assert_array_equal(view[inside], pixels[inside])
    np.testing.assert_allclose(view[~inside], blur(pixels)[~inside], atol=1e-6)
    assert np.abs(view[~inside] - pixels[~inside]).mean() > 0.1  # the noise outside is gone
    np.testing.assert_array_equal(render_view(film, "whole", SIZE, work_size=SIZE), pixels)


def test_lung_mask_heuristic_on_a_drawn_film():
    """Dark lungs inside a bright body on a dark background: both found, the outside air left out."""
    film = np.full((128, 128), 0.05, np.float32)
    cv2.ellipse(film, (64, 70), (56, 62), 0, 0, 360, 0.75, -1)
    truth = np.zeros((128, 128), np.uint8)
    for x in (40, 88):
        cv2.ellipse(truth, (x, 62), (16, 34), 0, 0, 360, 1, -1)
    film[truth.astype(bool)] = 0.25
    film += np.random.default_rng(0).normal(0, 0.02, film.shape).astype(np.float32)
    mask = lung_field_mask(film)
    truth = truth.astype(bool)
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.8
    assert not mask[:10].any() and not mask[:, :8].any()
    # A generated radiograph: roughly its true lung fields. A blank film: the position prior.
    radiograph = chest_radiograph("normal", size=128, seed=4)
    mask = lung_field_mask(radiograph.clean)
    assert (mask & radiograph.lungs).sum() / (mask | radiograph.lungs).sum() >= 0.5
    np.testing.assert_array_equal(lung_field_mask(np.full((64, 64), 0.5, np.float32)), prior_lungs((64, 64)))


def test_lungs_masked_view_fills_the_lungs_with_the_rest_of_the_films_mean(tmp_path):
    image = np.random.default_rng(1).uniform(0, 1, (SIZE, SIZE)).astype(np.float32)
    path = save(tmp_path / "film.png", image)
    pixels = np.rint(image * 255) / 255
    view = render_view(ProbeFilm("film.png", "p", "normal", "a", "test", path, lungs=LUNGS), "lungs_masked", SIZE,
                       work_size=SIZE)
    np.testing.assert_allclose(view[~LUNGS], pixels[~LUNGS], atol=1e-6)
    np.testing.assert_allclose(view[LUNGS], pixels[~LUNGS].mean(), atol=1e-5)


def leakage_films(tmp_path, artefact: bool) -> tuple[list[ProbeFilm], list[ProbeFilm]]:
    """Patients alternate between cleaned (a box flattened to its mean when `artefact`: an over-smooth fill) and
    untouched films; labels alternate independently of that."""
    rng = np.random.default_rng(7)
    cleaned, untouched = [], []
    for index in range(120):
        split = "train" if index < 70 else "test"
        image = background(rng)
        x, y = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        box = (x, y, x + 16, y + 12)
        is_cleaned = index % 2 == 0
        if is_cleaned and artefact:
            image[y:y + 12, x:x + 16] = image[y:y + 12, x:x + 16].mean()
        path = save(tmp_path / f"{index:03d}.png", image)
        film = ProbeFilm(path.name, f"p{index}", ("normal", "COVID-19")[index // 2 % 2], "a", split, path,
                         (box,) if is_cleaned else ())
        (cleaned if is_cleaned else untouched).append(film)
    return cleaned, untouched


def test_leakage_probe_detects_a_planted_cleaning_artefact(tmp_path):
    result = leakage_probe(*leakage_films(tmp_path, artefact=True), LEAK_CONFIG, patch_size=16)
    assert result.auc("patches") >= 0.9 and result.auc("whole") >= 0.9
    correlation = result.correlation.set_index(["variant", "label"])
    assert set(correlation.index) == {(v, label) for v in ("whole", "patches") for label in ("COVID-19", "normal")}
    assert correlation.loc[("patches", "normal"), "cleaned_share"] == pytest.approx(0.5)
    assert abs(correlation.loc[("patches", "normal"), "correlation"]) < 0.4  # the leak does not follow the label


def test_leakage_probe_is_at_chance_without_an_artefact(tmp_path):
    result = leakage_probe(*leakage_films(tmp_path, artefact=False), LEAK_CONFIG, patch_size=16)
    for variant in ("whole", "patches"):
        row = result.table.set_index("variant").loc[variant]
        assert 0.3 <= row.auc <= 0.7 and row.ci_low <= 0.5 <= row.ci_high, variant


def test_label_from_source_on_a_known_table():
    def records(pairs):  # (source, label, count) → records, one patient each
        out = []
        for source, label, count in pairs:
            out += [Record(f"{source}{label}{k}", f"{source}{label}{k}.png", label, source) for k in range(count)]
        return out

    splits = {"train": records([("x", "normal", 20), ("y", "COVID-19", 20)]),
              "test": records([("x", "normal", 10), ("y", "COVID-19", 10)]),
              "mixed": records([("x", "normal", 6), ("x", "COVID-19", 6), ("y", "normal", 6), ("y", "COVID-19", 6),
                                ("z", "normal", 3)])}
    table = label_from_source(splits, n_resamples=200).set_index(["split", "fitted_on", "metric"])
    assert table.loc[("train", "train", "accuracy"), "value"] == 1.0
    assert table.loc[("test", "train", "macro_auc"), "value"] == 1.0
    assert table.loc[("test", "train", "accuracy"), "n"] == 20
    # z is unseen in train: the prior, a tie, goes to the first label (COVID-19), wrong for its 3 films.
    assert table.loc[("mixed", "train", "accuracy"), "value"] == pytest.approx(12 / 27)
    # Fitted on itself: z's 3 normal films score 0.8 for normal, x and y 0.5: AUC (3·12 + ½·12·12) / (15·12) = 0.6.
    assert table.loc[("mixed", "self", "macro_auc"), "value"] == pytest.approx(0.6)
    assert table.loc[("mixed", "train", "majority_rate"), "value"] == pytest.approx(12 / 27)
    assert ("train", "self", "accuracy") not in table.index
    auc_row = table.loc[("test", "train", "auc_normal")]
    assert auc_row.n == 10 and np.isfinite(auc_row.ci_low)
    small = label_from_source({"train": splits["train"], "tiny": splits["test"][:4] + splits["test"][-4:]},
                              n_resamples=50).set_index(["split", "fitted_on", "metric"])
    assert np.isnan(small.loc[("tiny", "train", "accuracy"), "ci_low"])  # 8 films < MIN_INTERVAL_N: no interval


def test_bad_input_names_the_file(tmp_path):
    films = make_films(tmp_path, n_train=4, n_test=4)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad = [*films[:-1], ProbeFilm("broken.png", "q", "normal", "a", "test", broken)]
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        source_probes(bad, views=("whole",), config=CONFIG)
    leak = [*films, ProbeFilm("again.png", films[0].patient_id, "normal", "a", "test", films[0].path)]
    with pytest.raises(PatientLeakError):
        source_probes(leak, views=("whole",), config=CONFIG)
    with pytest.raises(DatasetError, match="lung mask has shape"):
        render_view(ProbeFilm("x", "p", "normal", "a", "test", films[0].path, lungs=np.ones((3, 3), bool)),
                    "lungs_masked", 32)
    with pytest.raises(DatasetError, match="no source"):
        films_from_records([Record("p", "x.png", "normal", None, films[0].path)], "train")
    with pytest.raises(ProbeError, match="two"):
        source_probes([film for film in films if film.source == "a"], views=("whole",), config=CONFIG)
