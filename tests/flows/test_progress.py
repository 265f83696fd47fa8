"""Stage progress: stages are reported and timed, lines carry counts, rates and the time left."""

from __future__ import annotations

import pytest

from flows import progress
from flows.progress import LineReporter, stage, stage_times, use_reporter


@pytest.fixture
def lines():
    written: list[str] = []
    use_reporter(LineReporter(written.append, every=0.0))  # a line on every advance
    yield written
    use_reporter(LineReporter())


def test_a_stage_reports_start_counts_rate_and_end_and_is_timed(lines):
    first = len(stage_times())
    with stage("text detection", total=10) as advance:
        advance(4)
        advance(6)
    assert lines[0] == "text detection: started (10 images)"
    assert lines[1].startswith("text detection: 4/10 images, ") and "images/s, about " in lines[1]
    assert lines[2].startswith("text detection: 10/10 images, ") and lines[2].endswith("about 0 s left")
    assert lines[3].startswith("text detection: done in ")
    (timed,) = stage_times(first)
    assert (timed.name, timed.total) == ("text detection", 10) and timed.seconds >= 0


def test_a_failing_stage_is_timed_and_reported_as_ended(lines):
    first = len(stage_times())
    with pytest.raises(RuntimeError), stage("train A"):
        raise RuntimeError("diverged")
    assert [item.name for item in stage_times(first)] == ["train A"]
    assert lines == ["train A: started", lines[1]] and lines[1].startswith("train A: done in ")


def test_lines_between_start_and_end_come_at_most_every_interval():
    written: list[str] = []
    use_reporter(LineReporter(written.append, every=3600.0))
    try:
        with stage("iGOS++ of A", total=100) as advance:
            for _ in range(100):
                advance(1)
    finally:
        use_reporter(progress.LineReporter())
    assert len(written) == 2  # started, done: no line within the hour
