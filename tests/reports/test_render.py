"""reports.render on a tiny hand-written run: sections, embedded images, numbers, privacy, partial runs, Chromium."""

from __future__ import annotations

import base64
import html as html_lib
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimage

import reports
from reports.blocks import interval_cells
from reports.classifier_sections import verdict
from tests.reports.conftest import PLANTED_HEADER, PLANTED_PATIENT, SUMMARY, write_tiny_run

TITLES = ("Summary", "What was run", "Classifier A", "Audit of A", "COVIDx++", "Classifier B vs A", "Re-audit of B")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The parts of the report a test checks: h2 headings, img sources, table cells, scripts, links, text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self.external: list[str] = []
        self._tag = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if (tag == "script" and "src" in values) or (tag == "link" and values.get("href")):
            self.external.append(str(values))

    def handle_data(self, data: str) -> None:
        if self._tag == "h2":
            self.headings.append(data.strip())
        elif self._tag in ("td", "th"):
            self.cells.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_tiny_run(tmp_path_factory.mktemp("report") / "run")
    return reports.render(run)


def test_every_section_is_present_and_every_image_is_embedded(rendered: Path) -> None:
    page = Page(rendered.read_text(encoding="utf-8"))
    assert page.headings == [f"{i}. {title}" for i, title in enumerate(TITLES)]
    assert not page.external, "the report must open from disk without fetching anything"
    # figures: 2 confusion (A) + 2 share plots + 2 gallery rows + 2 COVIDx++ films (overview + 1 box crop each)
    # + 1 film with nothing detected (corners, top and bottom strips) + 2 confusion (B) + 1 re-audit
    assert len(page.images) == 16
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Not run" not in rendered.read_text(encoding="utf-8")


def test_numbers_shown_equal_the_run_tables(rendered: Path) -> None:
    run = rendered.parent
    cells = Page(rendered.read_text(encoding="utf-8")).cells
    metrics = pd.read_csv(run / "compare/metrics.csv").set_index(["split", "stratum_kind", "model", "metric"])
    row = metrics.loc[("test_decorrelated", "all", "b-a", "recall_COVID-19")]
    assert f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in cells
    by_class = pd.read_csv(run / "audit/a_by_class.csv").set_index("group")
    assert f"{by_class.loc['COVID-19', 'mean_text_share']:.3f}" in cells
    mcnemar = pd.read_csv(run / "compare/mcnemar.csv").set_index("split")
    assert f"{mcnemar.loc['test_decorrelated', 'p_value']:.2g}" in cells
    predictions = pd.read_csv(run / "predictions/a_test.csv")
    covid_as_normal = ((predictions["label"] == "COVID-19") & (predictions["predicted"] == "normal")).sum()
    assert str(covid_as_normal) in cells
    manifest = pd.read_csv(run / "covidx_pp/manifest.csv")
    assert f"{manifest['masked_fraction'][manifest['status'] == 'cleaned'].max():.3f}" in cells
    markdown = (run / "summary.md").read_text(encoding="utf-8")
    assert f"{SUMMARY['flag_precision']:.3f}" in markdown and "| test_decorrelated" in markdown
    assert "## 6. Re-audit of B" in markdown


def test_no_patient_identifier_reaches_the_report(rendered: Path) -> None:
    for output in (rendered, rendered.parent / "summary.md"):
        text = output.read_text(encoding="utf-8")
        assert PLANTED_PATIENT not in text and PLANTED_HEADER not in text
        assert "patient_id" not in text


def test_a_partial_run_renders_with_not_run(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    for relative in ("compare", "audit", "covidx_pp"):
        shutil.rmtree(run / relative)
    (run / "summary.json").unlink()
    html = reports.render(run).read_text(encoding="utf-8")
    page = Page(html)
    assert len(page.headings) == 7
    for missing in ("compare/metrics.csv", "audit/a.csv", "covidx_pp/manifest.csv", "audit/b.csv", "summary.json"):
        assert f"{missing}" in html
    assert html.count("Not run (") == 6  # sections 0 (audit/a.csv), 1 (summary.json), 3, 4, 5, 6
    assert "Intervals: not run" in html


@pytest.mark.parametrize(("b_recall", "p", "expected", "absent"), [
    (0.75, 0.004, "the text shortcut was real and removing it helped", "Not significant"),
    (0.75, 0.2, "do not show that removing the text changed", "shortcut was real"),
    (0.10, 0.004, "made B worse", "shortcut was real"),
    (0.25, 0.004, "did not change", "shortcut was real"),
])
def test_verdict_follows_the_numbers(b_recall: float, p: float, expected: str, absent: str) -> None:
    rows = [("test_decorrelated", "all", "all", model, "recall_COVID-19", value, value - 0.05, value + 0.05)
            for model, value in (("a", 0.25), ("b", b_recall), ("b-a", b_recall - 0.25))]
    metrics = pd.DataFrame(rows, columns=["split", "stratum_kind", "stratum", "model", "metric", "value", "ci_low",
                                          "ci_high"])
    mcnemar = pd.DataFrame({"split": ["test_decorrelated"], "stratum_kind": ["all"], "p_value": [p]})
    said = " ".join(verdict(metrics, mcnemar))
    assert expected in said and absent not in said
    assert "one shortcut among several" in said


def test_a_recall_over_too_few_images_gets_no_interval_and_no_verdict() -> None:
    """One COVID-19 image: the comparison gives no interval (n < 10), the report says why and draws no
    conclusion, even with a 'significant' McNemar p from the other classes."""
    rows = [("test_decorrelated", "all", "all", model, "recall_COVID-19", 1, value, math.nan, math.nan)
            for model, value in (("a", 1.0), ("b", 0.0), ("b-a", -1.0))]
    metrics = pd.DataFrame(rows, columns=["split", "stratum_kind", "stratum", "model", "metric", "n", "value",
                                          "ci_low", "ci_high"])
    mcnemar = pd.DataFrame({"split": ["test_decorrelated"], "stratum_kind": ["all"], "p_value": [1e-4]})
    said = " ".join(verdict(metrics, mcnemar))
    assert "rests on 1 image(s)" in said and "too few for an interval or a verdict" in said
    assert "made B worse" not in said and "[-1.000, -1.000]" not in said
    assert interval_cells(metrics) == ["1.000 (n=1: too few images for an interval)",
                               "0.000 (n=1: too few images for an interval)",
                               "-1.000 (n=1: too few images for an interval)"]
    counted = metrics.assign(n=40, ci_low=[0.9, 0.0, -1.0], ci_high=[1.0, 0.1, -0.9])
    assert interval_cells(counted)[0] == "1.000 [0.900, 1.000] (n=40)"


def test_verdict_on_a_confounded_split_only_says_it_proves_little() -> None:
    rows = [("test", "all", "all", model, "recall_COVID-19", value, value, value)
            for model, value in (("a", 0.5), ("b", 0.9), ("b-a", 0.4))]
    metrics = pd.DataFrame(rows, columns=["split", "stratum_kind", "stratum", "model", "metric", "value", "ci_low",
                                          "ci_high"])
    mcnemar = pd.DataFrame({"split": ["test"], "stratum_kind": ["all"], "p_value": [1e-4]})
    said = " ".join(verdict(metrics, mcnemar))
    assert "proves little" in said and "shortcut was real" not in said


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_headless_chromium_renders_the_page(rendered: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,3000",
                    rendered.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = mpimage.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.std() > 0.05, "the screenshot is blank"
    # Rendered content reaches the lower part of the page (figures and tables laid out, not one error line).
    assert np.mean(pixels[1500:].std(axis=(1, 2)) > 0.01) > 0.2


def test_the_seeds_line_names_each_seed_by_its_setting():
    from reports.run_section import seed_settings

    config = {"data": {"synthetic": {"seed": 3, "n_train": 10}}, "train": {"seed": 0, "epochs": 2},
              "compare": {"seed": 7, "extra_train_seeds": [1, 2]}, "report": True}
    assert seed_settings(config) == [("data.synthetic.seed", 3), ("train.seed", 0), ("compare.seed", 7),
                                     ("compare.extra_train_seeds", [1, 2])]


LAYOUT_PROBE = """<script>
// Where the summary's parts end on the page, in CSS pixels from the top (read back from the dumped DOM).
var summary = document.getElementById("section-0");
var bottom = function (element) { return Math.ceil(element.getBoundingClientRect().bottom); };
document.body.setAttribute("data-layout", JSON.stringify({
  verdicts: Array.from(summary.querySelectorAll("p.verdict")).map(bottom),
  per_class: bottom(summary.querySelector("div.table")),
  per_class_caption: summary.querySelector("div.table strong").textContent}));
</script>
</body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_the_first_screen_holds_the_verdict_and_the_per_class_reliance(rendered: Path, tmp_path: Path) -> None:
    """Laid out by headless Chromium in a 1400×900 window: the reliance answer, the per-class table and every
    verdict sentence end above the fold."""
    probed = tmp_path / "probed.html"
    probed.write_text(rendered.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--dump-dom",
                          probed.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    layout = json.loads(html_lib.unescape(re.search(r'data-layout="([^"]*)"', dom).group(1)))
    assert layout["per_class_caption"].startswith("Reliance on text per class")
    assert len(layout["verdicts"]) >= 3  # the reliance answer and one sentence per test split at least
    assert max(layout["verdicts"]) <= 900 and layout["per_class"] <= 900, layout


def test_a_rerun_into_the_same_folder_gets_a_since_the_last_run_section(tmp_path: Path) -> None:
    from pipeline.changes import RunSnapshot, inventory_table, since_last_run

    run = write_tiny_run(tmp_path / "run")
    audit = pd.read_csv(run / "audit/a.csv")
    before = RunSnapshot(inventory_table({"test": [("gone.png", "1"), ("kept.png", "2"), ("edited.png", "3")]}),
                         audit.assign(flagged=False), "2026-12-01T00:00:00+00:00")
    now = inventory_table({"test": [("kept.png", "2"), ("edited.png", "4"), ("new1.png", "5"), ("new2.png", "6")]})
    since = since_last_run(before, now, audit)
    (run / "changes.json").write_text(json.dumps(since))
    html = reports.render(run).read_text(encoding="utf-8")
    page = Page(html)
    assert page.headings[-1] == "7. Since the last run"
    flagged = int(audit["flagged"].sum())
    line = (f"2 image(s) added, 1 removed, 1 changed, 0 listed but unreadable, 1 unchanged; {flagged} film(s) "
            f"newly flagged as text-reliant, 0 no longer flagged (of {len(audit)} audited both times)")
    assert html.count(line) == 2  # in the summary and in section 7
    assert {"test/new1.png", "test/gone.png", "test/edited.png"} <= set(page.cells)
    assert "## 7. Since the last run" in (run / "summary.md").read_text(encoding="utf-8")


def test_the_summary_lists_no_text_reliant_film_when_no_probability_dropped(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    audit = pd.read_csv(run / "audit/a.csv")
    audit.assign(cf_probability_drop=audit["cf_probability_drop"].clip(upper=0.0)).to_csv(run / "audit/a.csv",
                                                                                          index=False)
    html = reports.render(run).read_text(encoding="utf-8")
    assert "no film is listed as text-reliant" in html and "The most text-reliant films" not in html
    assert "7. Since the last run" not in html  # a first run: no changes.json


def test_long_detail_tables_are_collapsed_and_the_summary_never_is(tmp_path: Path) -> None:
    from pipeline.changes import RunSnapshot, inventory_table, since_last_run

    run = write_tiny_run(tmp_path / "run")
    audit = pd.read_csv(run / "audit/a.csv")
    before = RunSnapshot(inventory_table({"test": []}), audit, "2026-12-01T00:00:00+00:00")
    added = inventory_table({"test": [(f"new{i:02}.png", str(i)) for i in range(15)]})
    (run / "changes.json").write_text(json.dumps(since_last_run(before, added, audit)))
    html = reports.render(run).read_text(encoding="utf-8")
    summary, detail = html.split('<section id="section-1">', 1)
    assert "<details" not in summary
    collapsed = re.findall(r'<details class="table"><summary><strong>(.*?)</strong> \((\d+) rows\)</summary>(.*?)'
                           r"</details>", detail, re.S)
    assert [(caption, rows) for caption, rows, _ in collapsed] == [("The films concerned (up to 20 of each kind)",
                                                                     "15")]
    assert collapsed[0][2].count("<tr") == 16  # + the header row
    shown = re.findall(r'<div class="table"><p>.*?</table>', detail, re.S)
    assert shown and all(table.count("<tr") <= 13 for table in shown)
    assert "<summary><strong>The run's config.yaml</strong></summary><pre>" in detail


def test_an_epoch_chosen_on_few_validation_images_is_flagged(tmp_path: Path) -> None:
    from pipeline.train import FEW_VALIDATION_IMAGES
    from reports.run_section import FEW_VALIDATION_IMAGES as REPORTED

    assert REPORTED == FEW_VALIDATION_IMAGES
    run = write_tiny_run(tmp_path / "run")
    for model, images in (("a", 40.0), ("b", 7.0)):
        path = run / "models" / f"{model}.json"
        meta = json.loads(path.read_text())
        path.write_text(json.dumps({**meta, "validation": {**meta["validation"], "images": images}}))
    html = html_lib.unescape(reports.render(run).read_text(encoding="utf-8"))
    assert "Classifier B's epoch was chosen on a validation split of 7 images" in html
    assert "Classifier A's epoch was chosen" not in html
