"""The audit configuration: YAML in, every bad key or value rejected before any work, defaults in one place."""

from pathlib import Path

import pytest
import yaml

from flows.config import ConfigError, RunConfig, load_config
from pipeline.text import TextConfig

ROOT = Path(__file__).parents[2]
BAD = [
    ({"trian": {}}, "trian: Extra inputs are not permitted"),
    ({"train": {"epoch": 3}}, "train.epoch: Unexpected keyword argument"),
    ({"train": {"epochs": 0}}, "epochs and patience must be >= 1"),
    ({"explain": {"mode": "turbo"}}, "mode must be 'fast' or 'faithful'"),
    ({"audit": {"threshold": 1.5}}, "threshold must be in [0, 1]"),
    ({"data": {"synthetic": {"shortcut": 2}}}, "data.synthetic.shortcut"),
    ({"data": {"audit_split": "validation"}}, "audit_split 'validation' is not one of test_splits"),
    ({"runner": {"dask_workers": 2, "dask_address": "tcp://127.0.0.1:8786"}}, "not both"),
    ({"clean": {"text": {"long_side": 300}}}, "set the text detector in `text`"),
    ({"run_dir": "."}, "run_dir must name a folder"),
    # values that used to fail only hours into a run
    ({"train": {"seed": -1}}, "train: Value error, invalid TrainConfig: seed must be in [0, 2**32 - 1], got -1"),
    ({"explain": {"seed": 2**32}}, "explain: Value error, seed must be an integer in [0, 2**32 - 1]"),
    ({"audit": {"seed": 2**32}}, "audit: Value error, seed must be at most 2**32 - 1"),
    ({"data": {"synthetic": {"seed": -1}}}, "data.synthetic.seed: Input should be greater than or equal to 0"),
    ({"compare": {"seed": 2**32}}, "compare.seed: Input should be less than or equal to 4294967295"),
    ({"compare": {"extra_train_seeds": [1, -1]}}, "compare.extra_train_seeds.1: Input should be greater than"),
    ({"compare": {"bootstrap": 10**12}}, "compare.bootstrap: Input should be less than or equal to 100000"),
    ({"explain": {"mask_size": 10000}}, "explain: Value error, mask_size must be at most 2048"),
    ({"explain": {"mask_size": 256}}, "explain.mask_size (256) must be at most train.image_size (224)"),
    # booleans and numbers are not each other (pydantic's lax mode would take true as 1 and 1 as true)
    ({"explain": {"mask_size": True}}, "explain.mask_size: expected a number, got true"),
    ({"train": {"learning_rate": True}}, "train.learning_rate: expected a number, got true"),
    ({"clean": {"jpeg_quality": True}}, "clean.jpeg_quality: expected a number, got true"),
    ({"compare": {"extra_train_seeds": [1, False]}}, "compare.extra_train_seeds.1: expected a number, got false"),
    ({"data": {"synthetic": {"seed": True}}}, "data.synthetic.seed: expected a number, got true"),
    ({"train": {"augment": 1}}, "train.augment: expected true or false, got 1"),
    ({"report": "yes"}, 'report: expected true or false, got "yes"'),
    # the opt-in probes stage: ProbeConfig's own checks, and the block's
    ({"probes": {"enabled": 1}}, "probes.enabled: expected true or false, got 1"),
    ({"probes": {"epoch": 2}}, "probes.epoch: Unexpected keyword argument"),
    ({"probes": {"epochs": 0}}, "probes: Value error, invalid ProbeConfig: epochs must be >= 1"),
    ({"probes": {"image_size": 512}}, "need 16 <= image_size <= work_size <= 2048, got 512, 256"),
    ({"probes": {"n_resamples": 10**6}}, "invalid ProbeConfig: n_resamples must be at most 100000, got 1000000"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_bad_settings_are_rejected_with_the_key_named(tmp_path, settings, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  epochs: 3\nexplain: {}\ntrain:\n  epochs: 5\n", "cfg.yaml:4: duplicate key 'train'"),
    ("train:\n  epochs: 3\n  seed: 1\n  epochs: 5\n", "cfg.yaml:4: duplicate key 'epochs'"),
    ("compare: {seed: 1, bootstrap: 500, seed: 2}\n", "cfg.yaml:1: duplicate key 'seed'"),
])
def test_a_repeated_key_is_refused_with_its_name_and_line(tmp_path, text, message):
    """Plain YAML keeps the last of two equal keys without a word; one of the two settings would be lost."""
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("explain: &seeded {seed: 3}\naudit: {<<: *seeded, seed: 4}\n")
    config = load_config(path)
    assert config.explain.seed == 3 and config.audit.seed == 4


def test_the_largest_settings_in_range_are_taken(tmp_path):
    config = load_config(None, run_dir=tmp_path / "run", **{
        "train.seed": 2**32 - 1, "train.image_size": 256, "explain.mask_size": 256, "compare.bootstrap": 100_000,
        "compare.extra_train_seeds": [0, 2**32 - 1], "probes.n_resamples": 100_000})
    assert config.compare.bootstrap == 100_000 and config.explain.mask_size == 256
    assert config.probes.n_resamples == 100_000


def test_a_run_folder_inside_the_source_dataset_is_refused(tmp_path):
    (tmp_path / "covidx").mkdir()
    with pytest.raises(ConfigError, match="lies inside the source dataset"):
        load_config(None, **{"data.root": tmp_path / "covidx", "run_dir": tmp_path / "covidx" / "runs"})


def test_missing_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


def test_yaml_round_trips_with_every_default_written_out(tmp_path):
    config = load_config(None, run_dir=tmp_path / "run", **{"train.epochs": 7, "text.long_side": 512,
                                                             "probes": {"enabled": True, "epochs": 3}})
    assert config.train.epochs == 7 and config.probes.enabled and config.probes.epochs == 3
    assert not load_config(None).probes.enabled  # the probes stage is opt-in
    assert config.clean.text.long_side == 512 and config.audit.clean.text.long_side == 512  # one detector
    path = tmp_path / "again.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config
    assert "gallery_size" in config.to_yaml()


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml", "audit_synthetic.yaml"])
def test_shipped_configs_load(name):
    config = load_config(ROOT / "configs" / name)
    assert isinstance(config, RunConfig)


def test_the_audit_benchmark_config_is_the_demo_with_the_default_canvas():
    """configs/audit_synthetic.yaml must not drift from the demo: only the run folder and the CRAFT canvas differ."""
    demo, benchmark = (load_config(ROOT / "configs" / name) for name in ("demo.yaml", "audit_synthetic.yaml"))
    assert demo.text.upscale == 2.0 and benchmark.text == TextConfig(long_side=1024)
    with_the_demo_canvas = load_config(ROOT / "configs" / "audit_synthetic.yaml", run_dir=demo.run_dir, text=demo.text)
    assert with_the_demo_canvas == demo  # the text settings reach the cleaning configs too

