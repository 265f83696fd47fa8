"""The configuration of one audit run: a pydantic model, loadable from YAML, every default in one place.

Sections reuse the stages' own frozen dataclasses (`pipeline.train.TrainConfig`, ...), so a default is
defined once, where the stage lives; pydantic validates them from YAML, rejects unknown keys at every
level and runs each stage's own range checks before any work starts. Also refused at load: a key repeated in
one mapping (YAML would keep the last silently), a boolean where a number is expected and a number where a
boolean is (pydantic's lax mode, which validates the stages' dataclasses, reads `true` as 1 and 1 as true),
and values that would fail hours later: seeds outside [0, 2**32 - 1], `compare.bootstrap` and
`probes.n_resamples` above 100,000, `explain.mask_size` above `train.image_size`.

    run_dir: runs/demo
    data: {root: null, synthetic: {n_train: 450, ...}}   # root: a COVIDx folder; null: synthetic data
    train: {architecture: small_cnn, image_size: 128, ...}
    explain: {mask_size: 28, iterations: 10, ...}
    ...
    probes: {enabled: false, epochs: 12, ...}           # the opt-in stage "did cleaning remove the shortcut?"

`configs/demo.yaml` is the `make demo` configuration, `configs/paper.yaml` the paper-scale one.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from datasets.covidx import DuplicatePolicy
from pipeline.audit import AuditConfig
from pipeline.clean import CleanConfig
from pipeline.explain import ExplainConfig
from pipeline.probes import ProbeConfig
from pipeline.text import TextConfig
from pipeline.train import TrainConfig


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the file and the key."""


# A seed numpy, torch and Python's random all accept.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """The generated COVIDx-like dataset (datasets.synthetic.generate) used when `data.root` is null."""

    n_train: int = Field(450, ge=3)
    n_test: int = Field(150, ge=3)
    image_size: int = Field(256, ge=32, le=2048)
    shortcut: float = Field(0.9, ge=0.0, le=1.0)
    repeat_fraction: float = Field(0.25, ge=0.0, le=1.0)
    seed: Seed = 0


class DataConfig(_Strict):
    """Where the images are.

    root: a COVIDx folder (split files and image folders); null generates the synthetic dataset into
        `<run_dir>/data`. train_split: the training split file, relative to root. test_splits: test
        split name → split file; each split file's image folder is the name before its last underscore
        (`test_COVIDx9A.txt` → `test/`). audit_split: the test split whose images are explained and
        audited (and whose COVIDx++ copy is `<audit_split>_pp`). duplicates: a filename listed twice with
        another patient, label or source keeps its first line and is listed in the report ("keep_first"), or
        refuses the file ("error"); lines repeated verbatim are always read once and counted.
        allow_patient_overlap: accept patients in both training and a test split (some published COVIDx
        versions have them) and list them in the report; false refuses such splits.
    """

    root: Path | None = None
    train_split: str = "train_synthetic.txt"
    test_splits: dict[str, str] = Field(default_factory=lambda: {
        "test": "test_synthetic.txt", "test_decorrelated": "test_decorrelated_synthetic.txt"})
    audit_split: str = "test"
    synthetic: SyntheticData = SyntheticData()
    duplicates: DuplicatePolicy = "keep_first"
    allow_patient_overlap: bool = False

    @model_validator(mode="after")
    def _audit_split_is_a_test_split(self) -> DataConfig:
        if self.audit_split not in self.test_splits:
            raise ValueError(f"audit_split {self.audit_split!r} is not one of test_splits {sorted(self.test_splits)}")
        if not self.test_splits:
            raise ValueError("test_splits must name at least one split")
        return self


MAX_RESAMPLES = 100_000  # bootstrap resamples: the weights alone take 8 bytes x resamples x images


class CompareSettings(_Strict):
    """The paired comparison: bootstrap resamples (patients resampled; 100 to 100,000: the resample weights
    alone take 8 bytes × resamples × test images, 320 MB at 100,000 × 400), interval level, bootstrap seed,
    and `extra_train_seeds`: train both arms again with these seeds (besides `train.seed`) and report each
    metric's mean ± sd across the seeds next to the single-run intervals (compare/seeds.csv). Seeds are in
    [0, 2**32 - 1]."""

    bootstrap: int = Field(2000, ge=100, le=MAX_RESAMPLES)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: Seed = 0
    extra_train_seeds: tuple[Seed, ...] = ()


@dataclass(frozen=True)
class ProbeSettings(ProbeConfig):
    """The probes stage (flows/probes_stage.py, docs/probes.md): off unless `enabled`; the other keys are
    `pipeline.probes.ProbeConfig`'s (image_size, work_size, epochs, batch_size, learning_rate, weight_decay,
    n_resamples, confidence, seed), checked by it, and n_resamples at most 100,000.

    Cost (docs/running.md §4): six small CNNs (four source views, the leakage probe's whole films and its
    patches) trained for `epochs` on the training split, and every training and audited film read and composed
    about five times, which dominates. On 2 busy CPU cores: 2 s on the tiny test audit (48 films; epochs 2,
    n_resamples 50, image_size 32), 11 s there at the defaults, 90 s at the demo's size (390 films of 192 px).
    """

    enabled: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_resamples > MAX_RESAMPLES:
            raise ValueError(f"invalid ProbeConfig: n_resamples must be at most {MAX_RESAMPLES}, got "
                             f"{self.n_resamples}")


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


class RunConfig(_Strict):
    """Everything one audit run needs; see the module docstring and README."""

    run_dir: Path = Path("runs/audit")
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    explain: ExplainConfig = ExplainConfig()
    text: TextConfig = TextConfig()
    audit: AuditConfig = AuditConfig()
    clean: CleanConfig = CleanConfig()
    compare: CompareSettings = CompareSettings()
    runner: RunnerConfig = RunnerConfig()
    probes: ProbeSettings = ProbeSettings()
    report: bool = True

    @field_validator("run_dir")
    @classmethod
    def _run_dir_not_empty(cls, value: Path) -> Path:
        if str(value) in ("", "."):
            raise ValueError("run_dir must name a folder for this run, e.g. runs/audit")
        return value

    @model_validator(mode="after")
    def _one_detector_and_one_cleaning(self) -> RunConfig:
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
    def _mask_within_the_image(self) -> RunConfig:
        """The iGOS mask is upsampled to the model's input: a finer mask than the image means nothing."""
        if self.explain.mask_size > self.train.image_size:
            raise ValueError(f"explain.mask_size ({self.explain.mask_size}) must be at most train.image_size "
                             f"({self.train.image_size}): the mask covers the model's input")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _booleans_stay_booleans(cls, data: Any, handler: ModelWrapValidatorHandler[RunConfig]) -> RunConfig:
        """Refuse a boolean taken as a number and a number taken as a boolean, at every level (the stages'
        dataclasses are validated in pydantic's lax mode; a strict config would refuse dicts for them)."""
        config = handler(data)
        errors = [InitErrorDetails(
            type=PydanticCustomError("boolean_retyped", "expected {expected}, got {given}", {
                "expected": "a number" if isinstance(given, bool) else "true or false",
                "given": json.dumps(given, default=str)}),
            loc=loc, input=given) for loc, given in _retyped(data, config)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return config

    @model_validator(mode="after")
    def _outputs_outside_the_source(self) -> RunConfig:
        if self.data.root is not None:
            source, run = self.data.root.resolve(), self.run_dir.resolve()
            if run == source or run.is_relative_to(source):
                raise ValueError(f"run_dir {self.run_dir} lies inside the source dataset {self.data.root}: the source "
                                 "is only ever read; choose a folder outside it")
        return self

    def to_yaml(self) -> str:
        """Every setting, defaults written out, as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _retyped(given: Any, taken: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(location, value) of every value in the input `given` that validation turned from a boolean into
    something else or from something else into a boolean (`taken`: the validated config)."""
    if isinstance(given, dict):
        for key, value in given.items():
            inner = taken.get(key) if isinstance(taken, dict) else getattr(taken, str(key), None)
            yield from _retyped(value, inner, (*loc, key))
    elif isinstance(given, list | tuple) and isinstance(taken, list | tuple):
        for index, (value, inner) in enumerate(zip(given, taken, strict=False)):
            yield from _retyped(value, inner, (*loc, index))
    elif isinstance(given, bool) != isinstance(taken, bool):
        yield loc, given


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key repeated in one YAML mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden, as YAML means
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # yaml's own "found unhashable key" error follows
            if key in seen:
                raise _DuplicateKeyError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """The config of a YAML file (or the defaults), with top-level `overrides` applied; ConfigError names
    the file and every bad key (a repeated key: with its line)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except FileNotFoundError as error:
            raise ConfigError(f"{path}: config file not found") from error
        except _DuplicateKeyError as error:
            raise ConfigError(f"{path}:{error.problem_mark.line + 1}: {error.problem} (each key may appear "
                              "once per mapping)") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        data = loaded or {}
    for key, value in overrides.items():
        if value is not None:
            data = _merge(data, key.split("."), value)
    try:
        return RunConfig.model_validate(data)
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
