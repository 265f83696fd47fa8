"""The audit's opt-in probes stage (`probes.enabled`, docs/probes.md): did cleaning remove the shortcut?

`run_probes`, a stage task that audit_flow runs after "compare", calls `write_probes`, which builds the probes'
films from the run folder (`run_films`) and writes probes/ (columns in docs/run-directory.md):

    films                    the training split ("train") and the audited test split ("test"), each film with
                             its detected text boxes (text/detections.csv), its COVIDx++ copy (covidx_pp/, via
                             the manifest) and, on synthetic data, the generator's lung fields (real data: the
                             estimate of pipeline.probes.views); films that text detection or COVIDx++ rejected
                             are left out
    source.csv               pipeline.probes.source_probes on the four views
    leakage.csv, leakage_correlation.csv
                             pipeline.probes.leakage_probe: the COVIDx++ films whose text was inpainted
                             ("cleaned", with the boxes removed) against the films in which detection found no
                             box ("never-texted"); the same rule on real and synthetic data (the generator's
                             text-free copies are not used); a patient with films of both kinds is left out
    label_from_source.csv    pipeline.probes.label_from_source on the training split and every test split
    status.json              the films used, what was left out and, per probe, why it was not run

A probe the data cannot carry (fewer than two sources, no never-texted film in a split, too few films) writes
its table's header only and its reason under status.json's "skipped": never a number.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger

from datasets.atomic import sha256_of, write_text
from datasets.covidx import Record
from datasets.synthetic import read_truth
from flows.config import RunConfig
from flows.rundir import content_key
from flows.tasks import Data, Split, stage_task
from pipeline import text as text_stage
from pipeline.clean_manifest import ManifestRow, read_manifest
from pipeline.probes import (
    CORRELATION_COLUMNS,
    LABEL_FROM_SOURCE_COLUMNS,
    LEAKAGE_COLUMNS,
    SOURCE_COLUMNS,
    ProbeConfig,
    ProbeError,
    ProbeFilm,
    films_from_records,
    generator_lungs,
    label_from_source,
    leakage_probe,
    source_probes,
)
from pipeline.probes.films import as_box

FOLDER = "probes"
TABLES = {"source": ("source.csv", SOURCE_COLUMNS), "leakage": ("leakage.csv", LEAKAGE_COLUMNS),
          "leakage_correlation": ("leakage_correlation.csv", CORRELATION_COLUMNS),
          "label_from_source": ("label_from_source.csv", LABEL_FROM_SOURCE_COLUMNS)}
STATUS = "status.json"
NO_SOURCE = "(none)"  # the source of a film whose split line has none (the report's name for it)


def probe_outputs(run_dir: Path) -> tuple[Path, ...]:
    """Every file the stage writes, whatever it skips: the four tables and status.json."""
    folder = run_dir / FOLDER
    return (*(folder / name for name, _ in TABLES.values()), folder / STATUS)


@dataclass
class RunFilms:
    """The probes' films of one run. films: every usable film of the training ("train") and audited ("test")
    splits; cleaned: those whose text COVIDx++ inpainted, as their cleaned copy with the boxes removed;
    never_texted: those with no detected box, as stored; left_out: reason → films."""

    films: list[ProbeFilm] = field(default_factory=list)
    cleaned: list[ProbeFilm] = field(default_factory=list)
    never_texted: list[ProbeFilm] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)


def _with_source(records: list[Record]) -> list[Record]:
    """Records whose split line gives no source get NO_SOURCE: one group of their own."""
    return [record if record.source else replace(record, source=NO_SOURCE) for record in records]


def run_films(data: Data, run_dir: Path, detections_csv: Path, manifest_csv: Path) -> RunFilms:
    """The films of the training and audited splits as the probes see them (see the module docstring)."""
    manifest = read_manifest(manifest_csv)
    out = RunFilms()
    for probe_split, split in (("train", data.train), ("test", data.tests[data.audit_split])):
        boxes = text_stage.read_detections(detections_csv, split=split.name)
        rows: dict[str, ManifestRow] = {}
        usable = []
        for record in _with_source(split.records()):
            row = manifest.get(Path(record.path).relative_to(data.root).as_posix())
            if record.filename not in boxes:
                out.left_out["rejected by text detection"] += 1
            elif row is None or row.status == "rejected":
                out.left_out["no COVIDx++ copy"] += 1
            else:
                rows[record.filename] = row
                usable.append(record)
        lungs = generator_lungs(data.root, read_truth(data.root, split.name)) if data.synthetic else {}
        for film in films_from_records(usable, probe_split, boxes=boxes, lungs=lungs):
            row = rows[film.filename]
            copy = run_dir / "covidx_pp" / row.output
            out.films.append(replace(film, cleaned=copy))
            if row.status == "cleaned" and row.boxes:
                out.cleaned.append(replace(film, path=copy, boxes=tuple(as_box(box) for box in row.boxes)))
            elif not film.boxes:
                out.never_texted.append(film)
    both = {film.patient_id for film in out.cleaned} & {film.patient_id for film in out.never_texted}
    if both:
        out.left_out["leakage probe: patient with cleaned and never-texted films"] += sum(
            film.patient_id in both for film in out.cleaned + out.never_texted)
        out.cleaned = [film for film in out.cleaned if film.patient_id not in both]
        out.never_texted = [film for film in out.never_texted if film.patient_id not in both]
    return out


def _probes_key(inputs: dict[str, Any]) -> str:
    """The stage's key: the data, the detections, the COVIDx++ manifest (its images' hashes) and the probes config."""
    return content_key("probes", inputs["data"].digest, sha256_of(inputs["detections_csv"]),
                       sha256_of(inputs["manifest_csv"]), inputs["config"].probes)


def _counts(films: list[ProbeFilm]) -> dict[str, int]:
    return {split: sum(film.split == split for film in films) for split in ("train", "test")}


def write_probes(data: Data, run_dir: Path, detections_csv: Path, manifest_csv: Path, settings: ProbeConfig
                 ) -> dict:
    """The source probes, the cleaning-leakage probe and label-from-source of the run → probes/ (all of
    `probe_outputs`); returns status.json's content. A probe that raises ProbeError (the data cannot carry it)
    is skipped with its reason; unreadable films raise the probes' own errors, naming the file."""
    found = run_films(data, run_dir, detections_csv, manifest_csv)
    tables: dict[str, pd.DataFrame] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def attempt(name: str, probe: Callable[[], dict[str, pd.DataFrame]]) -> None:
        started = time.perf_counter()
        try:
            tables.update(probe())
        except ProbeError as error:
            skipped[name] = str(error)
        seconds[name] = round(time.perf_counter() - started, 1)

    sources = sorted({film.source for film in found.films if film.split == "train"})
    attempt("source", lambda: {"source": source_probes(found.films, config=settings).table})
    attempt("leakage", lambda: _leakage_tables(found, settings))
    attempt("label_from_source", lambda: _label_from_source({"train": data.train, **data.tests}, sources, settings))
    for name, (filename, columns) in TABLES.items():
        table = tables.get(name, pd.DataFrame(columns=list(columns)))
        write_text(run_dir / FOLDER / filename, table.to_csv(index=False, lineterminator="\n"))
    status = {"audit_split": data.audit_split, "films": _counts(found.films), "sources": sources,
              "generator_lung_masks": sum(film.lungs is not None for film in found.films),
              "cleaned": _counts(found.cleaned), "never_texted": _counts(found.never_texted),
              "left_out": dict(found.left_out), "skipped": skipped, "seconds": seconds}
    write_text(run_dir / FOLDER / STATUS, json.dumps(status, indent=1) + "\n")
    return status


@stage_task("probes", _probes_key)
def run_probes(data: Data, run_dir: Path, detections_csv: Path, manifest_csv: Path, config: RunConfig) -> Path:
    """`write_probes` with the run's `probes` settings; returns the path of probes/status.json."""
    status = write_probes(data, run_dir, detections_csv, manifest_csv, config.probes)
    get_run_logger().info("probes: %s films, skipped %s, %s s", status["films"], sorted(status["skipped"]),
                          status["seconds"])
    return run_dir / FOLDER / STATUS


def _leakage_tables(found: RunFilms, settings: ProbeConfig) -> dict[str, pd.DataFrame]:
    """leakage.csv and leakage_correlation.csv of the run's cleaned and never-texted films."""
    result = leakage_probe(found.cleaned, found.never_texted, settings)
    return {"leakage": result.table, "leakage_correlation": result.correlation}


def _label_from_source(splits: dict[str, Split], sources: list[str], settings: ProbeConfig
                       ) -> dict[str, pd.DataFrame]:
    """label_from_source of every split (records with NO_SOURCE where the line has none); ProbeError with fewer
    than two training sources, where the source cannot say more than the majority label."""
    if len(sources) < 2:
        raise ProbeError(f"the training films come from {len(sources)} source(s) {sources}: label-from-source "
                         "needs at least two")
    records = {name: _with_source(split.records()) for name, split in splits.items()}
    return {"label_from_source": label_from_source(records, n_resamples=settings.n_resamples,
                                                   confidence=settings.confidence, seed=settings.seed)}
