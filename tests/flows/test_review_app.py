"""`cxr-audit review`: the app's routes on a hand-made run folder, the command's refusals, and a reviewer's clicks
in headless Chromium against the real command."""

from __future__ import annotations

import hashlib
import html as html_lib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reports
from datasets.atomic import file_sha256
from flows.cli import app as cli
from flows.review_app import create_app
from flows.review_run import ReviewError, ReviewRun
from reports import review
from reports.review import DECISIONS, read_decisions
from tests.flows.cdp import CHROMIUM, Chromium
from tests.reports.review_run import PATIENT, change, decision, write, write_review_run

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed; httpx serves the tests
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ORDER = ["film_2.png", "film_1.png", "film_0.png", "film_5.png", "film_4.png", "film_3.png"]
RUNNER = CliRunner()


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_review_run(tmp_path / "run")


@pytest.fixture
def client(run: Path) -> TestClient:
    return TestClient(create_app(ReviewRun.open(run, "ana")), base_url="http://127.0.0.1")


def source_hashes(run_dir: Path) -> dict[str, str]:
    return {path.relative_to(run_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted((run_dir / "data").rglob("*")) if path.is_file()}


def test_the_page_lists_the_films_in_review_order_without_patient_ids(client):
    page = client.get("/").text
    assert [page.index(f'data-film="{name}"') for name in ORDER] == sorted(page.index(f'data-film="{name}"')
                                                                           for name in ORDER)
    assert page.count('class="flag"') == 3 and PATIENT not in page
    words = " ".join(page.split())
    assert "probability of COVID-19 0.800 → 0.200 (drop 0.600); prediction COVID-19 → normal" in words
    assert page.count("not reviewed") == 6 and "precision: no decided film" in page
    first = client.get("/?limit=2").text
    assert first.count('class="film"') == 2 and 'href="?limit=52">Show 4 more' in first


def test_the_pictures_are_pngs_of_each_film(client, run):
    for kind in ("panels", "crop"):
        answer = client.get(f"/image/{kind}/film_0.png")
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get("/image/panels/film_9.png").status_code == 404
    (run / "data" / "test" / "film_3.png").unlink()
    missing = client.get("/image/panels/film_3.png")
    assert missing.status_code == 404 and "film_3.png: not found" in missing.json()["detail"]


def test_a_decision_is_written_with_the_films_hash_and_shown_on_the_page(client, run):
    before = source_hashes(run)
    answer = client.post("/decisions", json={"filename": "film_1.png", "decision": "does not", "note": " a marker "})
    assert answer.status_code == 200, answer.text
    rows = read_decisions(run / DECISIONS).to_dict("records")
    assert rows == [answer.json()]
    row = rows[0]
    assert (row["split"], row["source"], row["decision"], row["note"], row["reviewer"]) == (
        "test", "test/film_1.png", "does not", "a marker", "ana")
    assert row["image_sha256"] == file_sha256(run / "data" / "test" / "film_1.png")
    assert datetime.fromisoformat(row["decided_at"]).utcoffset().total_seconds() == 0
    page = client.get("/").text
    assert 'data-state="decided"\n         data-decision="does not"' in page and ">a marker</textarea>" in page
    assert source_hashes(run) == before


def test_bad_decisions_are_refused_and_nothing_is_written(client, run):
    assert client.post("/decisions", json={"filename": "film_1.png", "decision": "maybe"}).status_code == 422
    assert client.post("/decisions", json={"filename": "film_9.png", "decision": "unsure"}).status_code == 404
    (run / "data" / "test" / "film_3.png").unlink()
    gone = client.post("/decisions", json={"filename": "film_3.png", "decision": "unsure"})
    assert gone.status_code == 409 and "cannot be read" in gone.json()["detail"]
    as_text = client.post("/decisions", content=b'{"filename": "film_1.png", "decision": "unsure"}',
                          headers={"Content-Type": "text/plain"})  # what a cross-site form could send
    assert as_text.status_code == 422
    assert not (run / DECISIONS).exists()


def test_the_app_answers_only_to_its_own_host_names(run):
    app = create_app(ReviewRun.open(run, "ana"))
    assert TestClient(app, base_url="http://localhost").get("/").status_code == 200
    assert TestClient(app, base_url="http://attacker.example").get("/").status_code == 400


def test_a_run_given_by_a_relative_path_is_reviewed(run, monkeypatch):
    monkeypatch.chdir(run.parent)
    opened = ReviewRun.open(Path(run.name), "ana")
    assert opened.source("film_0.png") == "test/film_0.png"
    assert opened.picture("film_0.png").startswith(b"\x89PNG")
    assert opened.decide("film_0.png", "unsure")["image_sha256"] == file_sha256(run / "data" / "test" / "film_0.png")


def test_a_run_without_an_audit_or_its_films_cannot_be_reviewed(run):
    (run / "audit" / "a.csv").unlink()
    with pytest.raises(ReviewError, match=r"audit/a\.csv: not found"):
        ReviewRun.open(run, "ana")


@pytest.mark.parametrize(("setup", "message"), [
    (lambda run: run / "absent", "no such run folder"),
    (lambda run: (run / "config.yaml").unlink() or run, "not a run folder (no config.yaml)"),
    (lambda run: (run / "audit" / "a.csv").unlink() or run, "the run has no audit of A"),
    (lambda run: (run / "data" / "test_synthetic.txt").unlink() or run, "the source films are not here"),
])
def test_the_command_refuses_what_is_not_a_reviewable_run_with_exit_code_2(run, setup, message):
    result = RUNNER.invoke(cli, ["review", str(setup(run)), "--no-browser"])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_command_refuses_a_broken_decisions_file_naming_its_line(run):
    path = write(run, [decision(run, 0)])
    path.write_text(path.read_text().replace("relies on text", "perhaps"))
    result = RUNNER.invoke(cli, ["review", str(run), "--no-browser"])
    assert result.exit_code == 2 and f"{path}:2: decision 'perhaps'" in result.output, result.output


def test_the_command_refuses_to_carry_from_the_run_itself_or_a_taken_port(run):
    result = RUNNER.invoke(cli, ["review", str(run), "--no-browser", "--carry-from", str(run)])
    assert result.exit_code == 2 and "is the run itself" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = RUNNER.invoke(cli, ["review", str(run), "--no-browser", "--port", str(port)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1" in result.output, result.output


# ---------------------------------------------------------------- a reviewer in the browser


def start_review(*arguments: str) -> subprocess.Popen:
    """`cxr-audit review ...` in a process of its own."""
    command = Path(sys.executable).with_name("cxr-audit")
    return subprocess.Popen([str(command), "review", *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def review_url(process: subprocess.Popen) -> str:
    """The URL the command prints once it serves (its output read as it comes, unbuffered)."""
    deadline, output = time.monotonic() + 60, b""
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.5)[0]:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break  # the command ended
            output += chunk
            if found := re.search(rb"^review at (\S+)", output, re.MULTILINE):
                return found[1].decode()
    raise AssertionError(f"cxr-audit review printed no URL: {output.decode(errors='replace')}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def film(name: str) -> str:
    return f'.film[data-film="{name}"]'


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_a_reviewer_marks_three_films_in_chromium_and_they_persist(tmp_path):
    """Decisions carried from an earlier run of the same dataset (film 5 unchanged: it counts; film 4 changed: to
    review again); three films marked with mouse clicks, one with a typed note; after a reload the page and
    review/decisions.csv hold all of them, and the source films are unchanged."""
    earlier = write_review_run(tmp_path / "earlier")
    write(earlier, [decision(earlier, 5), decision(earlier, 4, review.DOES_NOT)])
    run = write_review_run(tmp_path / "run")
    change(run, 4)
    before = source_hashes(run)
    process = start_review(str(run), "--carry-from", str(earlier), "--no-browser", "--port", "0",
                           "--reviewer", "tester")
    try:
        with Chromium(tmp_path / "profile") as browser:  # starts while the command does
            url = review_url(process)
            assert url.startswith("http://127.0.0.1:")
            browser.open(url)
            assert browser.evaluate("document.querySelectorAll('.film').length") == 6
            assert browser.evaluate(f"document.querySelector('{film('film_5.png')}').dataset.decision") == \
                "relies on text"
            assert "review again (stale: the film changed" in browser.evaluate(
                f"document.querySelector('{film('film_4.png')} .status').textContent")
            loaded = "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
            assert browser.wait_for(f"{loaded} === 12 && {loaded}")  # per film: the panels and the removed text
            browser.click(f'{film("film_2.png")} button[data-decision="relies on text"]')
            browser.type(f"{film('film_1.png')} textarea", "only the PORTABLE plate")
            browser.click(f'{film("film_1.png")} button[data-decision="does not"]')
            browser.click(f'{film("film_0.png")} button[data-decision="unsure"]')
            for name in ("film_2.png", "film_1.png", "film_0.png"):
                browser.wait_for(f"document.querySelector('{film(name)} .status').textContent.includes('tester')")
            browser.reload()
            shown = browser.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('.film'))"
                                     ".map(f => [f.dataset.film, [f.dataset.decision, f.dataset.state]]))")
            assert shown == {"film_2.png": ["relies on text", "decided"], "film_1.png": ["does not", "decided"],
                             "film_0.png": ["unsure", "decided"], "film_5.png": ["relies on text", "decided"],
                             "film_4.png": ["", "stale"], "film_3.png": ["", "open"]}
            assert browser.evaluate(f"document.querySelector('{film('film_1.png')} textarea').value") == \
                "only the PORTABLE plate"
            totals = browser.evaluate("document.getElementById('totals').textContent")
            assert "Films decided: 4; to review again (the film changed since): 1." in totals
            assert "precision: 1/2 = 0.500 (n=2: too few films for an interval); recall" in totals
            assert "optimistic): 1/2 = 0.500" in totals  # film 2 flagged, film 5 not
            assert PATIENT not in browser.evaluate("document.documentElement.outerHTML")
    finally:
        stop(process)
    rows = read_decisions(run / DECISIONS)
    # The carried rows first; the three clicks' requests may reach the server in any order.
    assert list(rows["filename"][:2]) == ["film_5.png", "film_4.png"]
    assert list(rows["carried_from"]) == [str(earlier)] * 2 + [""] * 3
    mine = rows[rows["reviewer"] == "tester"].set_index("filename")
    assert mine["decision"].to_dict() == {"film_2.png": "relies on text", "film_1.png": "does not",
                                          "film_0.png": "unsure"}
    assert mine["image_sha256"].to_dict() == {name: file_sha256(run / "data" / "test" / name) for name in mine.index}
    assert mine["note"].to_dict() == {"film_2.png": "", "film_1.png": "only the PORTABLE plate", "film_0.png": ""}
    assert source_hashes(run) == before
    report = html_lib.unescape(reports.render(run).read_text(encoding="utf-8"))  # re-rendered with the decisions
    assert "Reviewers decided 4 film(s): 2 rely on text, 1 do not, 1 unsure" in report
    assert "precision of A's flags against them 1/2 = 0.500 (n=2: too few films for an interval)" in report
    assert "only the PORTABLE plate" not in report  # notes are not shown
