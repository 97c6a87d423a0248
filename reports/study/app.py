"""`dipir study serve`: the FastAPI app raters use.

Security model: a rater is identified by a random id plus a secret kept in an HttpOnly cookie
(only its SHA-256 is stored). Every answer must carry the rater id that matches the cookie, for a
pair assigned to that rater, answered once. Images are served only to a rater, for the pairs
assigned to them, under `/images/<token>` where the token is a keyed hash of (rater, pair, side):
the same picture in two pairs, on two sides or for two raters has two addresses, so neither the
URL nor the browser cache tells a rater which image (hence which method) they saw before. The
token is looked up in a server-side map to a file named in the manifest (no file system path is
ever built from the URL). Bodies over
`ServerLimits.max_body_bytes` get 413 before parsing, malformed bodies (NaN included) 400 without
echoing the input, new raters are rate-limited per client address and capped per study (429), and
every response says `nosniff` and carries a CSP that forbids framing (`guard.py`).

An answer must carry its time on screen as a JSON integer of at least `MIN_MS` (the page ignores
earlier answers, so only a script could send one). The server refuses to start on an
answers file whose assignments name pairs the manifest lacks (answers left from another study).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import Cookie, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from dipir.errors import DipirError
from reports.study.db import DB_NAME, DuplicateAnswer, NotAssigned, StudyDB, StudyFull
from reports.study.guard import (
    Guard,
    RateLimiter,
    ServerLimits,
    content_security_policy,
)
from reports.study.manifest import IMAGES, MANIFEST, load_manifest
from reports.study.page import MAX_MS, MIN_MS, PAGE

COOKIE = "dipir_rater"
TOKEN = re.compile(r"[0-9a-f]{32}")
TOKEN_CACHE = 1024  # raters whose token maps are kept in memory (an assignment never changes)


def image_token(key: bytes, rater_id: str, pair_id: str, side: str) -> str:
    return hmac.new(key, f"{rater_id}|{pair_id}|{side}".encode(), hashlib.sha256).hexdigest()[:32]


class Answer(BaseModel):
    rater_id: str = Field(min_length=1, max_length=64)
    pair_id: str = Field(min_length=1, max_length=64)
    side: str = Field(pattern="^(left|right)$")
    # strict: JSON true/false or 900.0 are not a time (lenient parsing stored true as 1 ms)
    ms: int = Field(strict=True, ge=0, le=MAX_MS)


def create_app(study: str | Path, limits: ServerLimits | None = None) -> FastAPI:
    limits = limits or ServerLimits()
    study = Path(study).resolve()
    manifest = load_manifest(study)
    cfg = manifest["config"]
    pairs = {p["pair_id"]: p for p in manifest["pairs"]}
    test_ids = [p["pair_id"] for p in manifest["pairs"] if p["kind"] == "test"]
    catch_ids = [p["pair_id"] for p in manifest["pairs"] if p["kind"] == "catch"]
    image_dir = (study / IMAGES).resolve()
    images = {p[s]["image"] for p in manifest["pairs"] for s in ("a", "b")}
    db = StudyDB(study / DB_NAME)
    stale = sorted(db.assigned_pair_ids() - pairs.keys())
    if stale:  # every old rater's page would get a 500 (no such pair), and the report would mix two studies
        raise DipirError(f"{len(stale)} assigned pair(s) are not in {study / MANIFEST} (e.g. {stale[0]!r}): "
                         "these answers belong to another study; move the file away or serve the study it came from",
                         study / DB_NAME)
    key = db.image_key()
    token_maps: OrderedDict[str, dict[str, str]] = OrderedDict()
    token_lock = threading.Lock()  # sync endpoints run in a thread pool
    app = FastAPI(title="DiPIR 2AFC study", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, max_body_bytes=limits.max_body_bytes, headers={
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": content_security_policy(PAGE),
        "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})
    new_raters = RateLimiter(limits.new_raters_per_minute)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # 400 naming the fields, never echoing the input (a NaN in it cannot be encoded as JSON: 500)
        where = sorted({".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body" for e in exc.errors()})
        return JSONResponse({"detail": f"invalid request: {', '.join(where)}"}, status_code=400)

    def rater_from_cookie(cookie: str | None) -> str:
        if not cookie or "." not in cookie:
            raise HTTPException(401, "no rater cookie: open the study page first")
        rater_id, _, secret = cookie.partition(".")
        if not db.check_rater(rater_id, secret):
            raise HTTPException(403, "unknown rater")
        return rater_id

    def tokens(rater_id: str) -> dict[str, str]:
        """token -> image name for every side of every pair assigned to the rater."""
        with token_lock:
            if rater_id in token_maps:
                token_maps.move_to_end(rater_id)
                return token_maps[rater_id]
        out = {}
        for pair_id, left in db.assignment(rater_id):
            p = pairs.get(pair_id)
            if p is not None:
                right = "b" if left == "a" else "a"
                out[image_token(key, rater_id, pair_id, "left")] = p[left]["image"]
                out[image_token(key, rater_id, pair_id, "right")] = p[right]["image"]
        with token_lock:
            token_maps[rater_id] = out
            if len(token_maps) > TOKEN_CACHE:
                token_maps.popitem(last=False)
        return out

    def state(rater_id: str) -> dict:
        done, total, trial = db.progress(rater_id)
        out = {"rater_id": rater_id, "done": done, "total": total, "trial": None}
        if trial:
            out["trial"] = {"pair_id": trial.pair_id,
                            **{side: f"/images/{image_token(key, rater_id, trial.pair_id, side)}"
                               for side in ("left", "right")}}
        return out

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # browsers ask for it on every page: a 404 logs a console error. (A `data:` icon link would
        # be blocked by the CSP's img-src 'self' and log one as well.)
        return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})

    @app.post("/api/rater")
    def rater(request: Request, response: Response, dipir_rater: str | None = Cookie(default=None)) -> dict:
        """Returns the cookie's rater if valid, else makes a new one with its randomized assignment."""
        if dipir_rater:
            try:
                return {"rater_id": rater_from_cookie(dipir_rater), "new": False}
            except HTTPException:
                pass  # stale cookie (e.g. a different study on this port): start afresh
        if not new_raters.allow(request.client.host if request.client else "?"):
            raise HTTPException(429, f"too many new raters from this address (at most {limits.new_raters_per_minute} a minute)")
        try:
            rater_id, secret = db.create_rater(test_ids, catch_ids, cfg.get("per_rater"), int(cfg.get("seed", 0)),
                                               limits.max_raters)
        except StudyFull:
            raise HTTPException(429, f"this study has its maximum of {limits.max_raters} raters") from None
        response.set_cookie(COOKIE, f"{rater_id}.{secret}", httponly=True, samesite="strict",
                            max_age=90 * 24 * 3600)
        return {"rater_id": rater_id, "new": True}

    @app.get("/api/next")
    def next_trial(dipir_rater: str | None = Cookie(default=None)) -> dict:
        return state(rater_from_cookie(dipir_rater))

    @app.post("/api/answer")
    def answer(ans: Answer, dipir_rater: str | None = Cookie(default=None)) -> dict:
        rater_id = rater_from_cookie(dipir_rater)
        if ans.rater_id != rater_id:
            raise HTTPException(403, "rater id does not match this browser's rater")
        if ans.ms < MIN_MS:
            raise HTTPException(422, f"answered after {ans.ms} ms: a pair must be on screen at least {MIN_MS} ms "
                                     "before it is answered")
        if ans.pair_id not in pairs:
            raise HTTPException(404, "unknown pair")
        try:
            db.record(rater_id, ans.pair_id, ans.side, ans.ms)
        except NotAssigned:
            raise HTTPException(404, "pair not assigned to this rater") from None
        except DuplicateAnswer:
            raise HTTPException(409, "this pair was already answered") from None
        return state(rater_id)

    @app.get("/images/{token}")
    def image(token: str, dipir_rater: str | None = Cookie(default=None)) -> FileResponse:
        rater_id = rater_from_cookie(dipir_rater)
        name = tokens(rater_id).get(token) if TOKEN.fullmatch(token) else None
        if name is None or name not in images:
            raise HTTPException(404, "not found")
        path = (image_dir / name).resolve()
        if path.parent != image_dir or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app
