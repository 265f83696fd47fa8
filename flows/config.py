"""The configuration of one audit run: a pydantic model, loadable from YAML, every default in one place.

Sections reuse the stages' own frozen dataclasses (`pipeline.train.TrainConfig`, ...), so a default is
defined once, where the stage lives; pydantic validates them from YAML, rejects unknown keys at every
level and runs each stage's own range checks before any work starts.

    run_dir: runs/demo
    data: {root: null, synthetic: {n_train: 450, ...}}   # root: a COVIDx folder; null: synthetic data
    train: {architecture: small_cnn, image_size: 128, ...}
    explain: {mask_size: 28, iterations: 10, ...}
    ...

`configs/demo.yaml` is the `make demo` configuration, `configs/paper.yaml` the paper-scale one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.audit import AuditConfig as AuditSettings
from pipeline.clean import CleanConfig
from pipeline.explain import ExplainConfig
from pipeline.text import TextConfig
from pipeline.train import TrainConfig


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """The generated COVIDx-like dataset (datasets.synthetic.generate) used when `data.root` is null."""

    n_train: int = Field(450, ge=3)
    n_test: int = Field(150, ge=3)
    image_size: int = Field(256, ge=32, le=2048)
    shortcut: float = Field(0.9, ge=0.0, le=1.0)
    repeat_fraction: float = Field(0.25, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)


class DataConfig(_Strict):
    """Where the images are.

    root: a COVIDx folder (split files and image folders); null generates the synthetic dataset into
        `<run_dir>/data`. train_split: the training split file, relative to root. test_splits: test
        split name → split file; each split file's image folder is the name before its last underscore
        (`test_COVIDx9A.txt` → `test/`). audit_split: the test split whose images are explained and
        audited (and whose COVIDx++ copy is `<audit_split>_pp`).
    """

    root: Path | None = None
    train_split: str = "train_synthetic.txt"
    test_splits: dict[str, str] = Field(default_factory=lambda: {
        "test": "test_synthetic.txt", "test_decorrelated": "test_decorrelated_synthetic.txt"})
    audit_split: str = "test"
    synthetic: SyntheticData = SyntheticData()

    @model_validator(mode="after")
    def _audit_split_is_a_test_split(self) -> DataConfig:
        if self.audit_split not in self.test_splits:
            raise ValueError(f"audit_split {self.audit_split!r} is not one of test_splits {sorted(self.test_splits)}")
        if not self.test_splits:
            raise ValueError("test_splits must name at least one split")
        return self


class CompareSettings(_Strict):
    """The paired comparison: bootstrap resamples (patients resampled), interval level, bootstrap seed, and
    `extra_train_seeds`: train both arms again with these seeds (besides `train.seed`) and report each
    metric's mean ± sd across the seeds next to the single-run intervals (compare/seeds.csv)."""

    bootstrap: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = Field(0, ge=0)
    extra_train_seeds: tuple[int, ...] = ()


class RunnerConfig(_Strict):
    """Where the per-image work runs: in this process (default), on a local Dask cluster of
    `dask_workers` processes, or on the Dask scheduler at `dask_address` (tcp://host:port)."""

    dask_workers: int | None = Field(None, ge=1)
    dask_address: str | None = None
    threads_per_worker: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_cluster(self) -> RunnerConfig:
        if self.dask_workers is not None and self.dask_address is not None:
            raise ValueError("give dask_workers (a local cluster) or dask_address (an existing one), not both")
        return self


class AuditConfig(_Strict):
    """Everything one audit run needs; see the module docstring and README."""

    run_dir: Path = Path("runs/audit")
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    explain: ExplainConfig = ExplainConfig()
    text: TextConfig = TextConfig()
    audit: AuditSettings = AuditSettings()
    clean: CleanConfig = CleanConfig()
    compare: CompareSettings = CompareSettings()
    runner: RunnerConfig = RunnerConfig()
    report: bool = True

    @field_validator("run_dir")
    @classmethod
    def _run_dir_not_empty(cls, value: Path) -> Path:
        if str(value) in ("", "."):
            raise ValueError("run_dir must name a folder for this run, e.g. runs/audit")
        return value

    @model_validator(mode="after")
    def _one_detector_and_one_cleaning(self) -> AuditConfig:
        """The stages share one text detector (`text`) and one way of removing text (`clean`): the
        counterfactuals of the audit and COVIDx++ must inpaint alike. The nested copies inside `clean` and
        `audit` follow them; setting a nested copy to something else is an error, not silently ignored."""
        if self.clean.text not in (TextConfig(), self.text):
            raise ValueError("set the text detector in `text`, not in `clean.text`")
        clean = replace(self.clean, text=self.text)
        if self.audit.clean not in (CleanConfig(), self.clean, clean):
            raise ValueError("set how text is removed in `clean`, not in `audit.clean`")
        object.__setattr__(self, "clean", clean)
        object.__setattr__(self, "audit", replace(self.audit, clean=clean))
        return self

    @model_validator(mode="after")
    def _outputs_outside_the_source(self) -> AuditConfig:
        if self.data.root is not None:
            source, run = self.data.root.resolve(), self.run_dir.resolve()
            if run == source or run.is_relative_to(source):
                raise ValueError(f"run_dir {self.run_dir} lies inside the source dataset {self.data.root}: the source "
                                 "is only ever read; choose a folder outside it")
        return self

    def to_yaml(self) -> str:
        """Every setting, defaults written out, as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path | None = None, **overrides: Any) -> AuditConfig:
    """The config of a YAML file (or the defaults), with top-level `overrides` applied; ConfigError names
    the file and every bad key."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ConfigError(f"{path}: config file not found") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        data = loaded or {}
    for key, value in overrides.items():
        if value is not None:
            data = _merge(data, key.split("."), value)
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as error:
        where = path if path is not None else "config"
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc']) or '(top)'}: {item['msg']}"
                             for item in error.errors())
        raise ConfigError(f"{where}: {problems}") from error


def _merge(data: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """`data` with the nested key path `keys` set to `value` (a copy; the input is not changed)."""
    out = dict(data)
    if len(keys) == 1:
        out[keys[0]] = value
    else:
        inner = out.get(keys[0])
        out[keys[0]] = _merge(inner if isinstance(inner, dict) else {}, keys[1:], value)
    return out
