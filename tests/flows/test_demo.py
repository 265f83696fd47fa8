"""The demo end to end on a tiny configuration: real training, real iGOS++, real files."""

import pandas as pd
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import run_demo
from pipeline.quick_audit import QuickAuditConfig

TINY = QuickAuditConfig(n_train=48, n_test=12, n_explain=2, image_size=64, epochs=2, igos_iterations=2,
                        igos_ig_steps=2)


def test_demo_writes_tables_and_heatmaps(tmp_path):
    result = run_demo(tmp_path, TINY)
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 2 and list(table.image) == [0, 1]
    assert table.text_share.between(0, 1).all() and table.insertion_auc.between(0, 1).all()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["image_000.png", "image_001.png"]
    assert (tmp_path / "figures" / "image_000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Mean share of iGOS++ saliency on burned-in text" in (tmp_path / "results.md").read_text()
    assert result.saliency.shape == (2, 64, 64)
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_cli_help_lists_the_demo():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output


def test_cli_rejects_a_bad_mode_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "run"), "--mode", "turbo"])
    assert result.exit_code == 2 and "igos_mode must be" in result.output
    assert not (tmp_path / "run").exists()
