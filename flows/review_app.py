"""The review page of `cxr-audit review RUN_DIR`: a small FastAPI app on 127.0.0.1.

Routes: GET / (the films in review order, `?limit=` of them, each with its pictures, A's counterfactual and its
decision), GET /image/panels/<filename> and /image/crop/<filename> (PNG, made on first request and kept in
memory), POST /decisions (JSON {filename, decision, note}: appends one decision, answers the row as JSON).
"""

from __future__ import annotations

import functools
import math
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import jinja2
import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from flows.review_run import ReviewError, ReviewRun
from reports.crops import FilmError
from reports.history import rate_cell
from reports.review import (
    DECISION_VALUES,
    DecisionsError,
    FlagReview,
    current_decisions,
    flag_precision_against_review,
)

PAGE = 50  # films per page; "show more" adds as many
HOSTS = ["127.0.0.1", "localhost"]  # the page answers only to these Host headers (no DNS rebinding)
TEMPLATES = Path(__file__).parent / "templates"


class Decision(BaseModel):
    """One decision as the page posts it."""

    filename: str
    decision: Literal[DECISION_VALUES]
    note: str = Field("", max_length=2000)


def create_app(review: ReviewRun) -> FastAPI:
    """The review app of one opened run. Pictures are drawn one at a time (matplotlib shares its font cache) and
    kept; decisions come only as JSON (a cross-site form cannot post one)."""
    app = FastAPI(title="cxr-audit review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=HOSTS)
    template = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                  undefined=jinja2.StrictUndefined).get_template("review.html.j2")
    pictures = {"panels": functools.lru_cache(maxsize=256)(review.picture),
                "crop": functools.lru_cache(maxsize=256)(review.crop)}
    drawing = threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def page(limit: int = Query(PAGE, ge=1)) -> str:
        decisions = current_decisions(review.root)
        films = [_film(row, decisions.current, decisions.stale, bool(review.removed(row.filename)))
                 for row in review.films.head(limit).itertuples()]
        return template.render(
            run=review.root.name, films=films,
            total=len(review.films), flagged=int(review.films["flagged"].astype(bool).sum()), limit=limit, more=PAGE,
            current=len(decisions.current), stale=len(decisions.stale), choices=DECISION_VALUES,
            flags=_flags_text(flag_precision_against_review(review.films, decisions.current)))

    @app.get("/image/{kind}/{filename:path}")
    def image(kind: Literal["panels", "crop"], filename: str) -> Response:
        try:
            with drawing:
                png = pictures[kind](filename)
        except KeyError as error:
            raise HTTPException(404, f"{filename}: not a film of this audit") from error
        except FilmError as error:
            raise HTTPException(404, str(error)) from error
        if png is None:
            raise HTTPException(404, f"{filename}: no text was removed from this film")
        return Response(png, media_type="image/png")

    @app.post("/decisions")
    def decide(decision: Decision) -> dict[str, str]:
        try:
            return review.decide(decision.filename, decision.decision, decision.note)
        except KeyError as error:
            raise HTTPException(404, f"{decision.filename}: not a film of this audit") from error
        except (ReviewError, DecisionsError) as error:
            raise HTTPException(409, str(error)) from error

    return app


def _number(value: object, digits: int = 3) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "–" if pd.isna(number) else f"{number:.{digits}f}"


def _film(row: tuple, current: pd.DataFrame, stale: pd.DataFrame, crop: bool) -> dict[str, object]:
    """What the page shows of one film (never its patient_id): the audit's numbers, the counterfactual, the
    current decision (or the stale one, to review again)."""
    decided = current[current["filename"] == row.filename].to_dict("records")
    old = stale[stale["filename"] == row.filename].to_dict("records")
    drop = pd.to_numeric(row.cf_probability_drop, errors="coerce")
    after = pd.to_numeric(row.cf_target_probability, errors="coerce")
    return {"filename": row.filename, "label": row.label, "source": row.source if isinstance(row.source, str) else "",
            "flagged": bool(row.flagged), "predicted": row.predicted, "target": row.target_label,
            "text_share": _number(row.text_share), "text_area": _number(row.text_area), "boxes": row.n_text_boxes,
            "counterfactual": not math.isnan(drop), "before": _number(after + drop), "after": _number(after),
            "drop": _number(drop), "cf_predicted": row.cf_predicted, "crop": crop,
            "decision": decided[0] if decided else None, "stale": old[0] if old else None}


def _flags_text(check: FlagReview) -> Mapping[str, str]:
    """A's flags against the decisions in words: {"precision": ..., "recall": ..., "reviewed": ...}."""
    return {"precision": rate_cell(check.precision), "recall": rate_cell(check.recall),
            "reviewed": f"{check.reviewed} audited films decided ({check.unsure} unsure, left out)"}


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: a free port); OSError when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` on `sock` until Ctrl-C (uvicorn)."""
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
