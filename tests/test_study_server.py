"""The study server: rater identity, one answer per pair, persistence, and only the study's own
images served (path traversal in raw and encoded forms against a real `dipir study serve`)."""

from __future__ import annotations

import http.client
import sqlite3

import psutil
import pytest
from fastapi.testclient import TestClient
from helpers.store import free_port, start_server, stop_server, write_fixture_study

from reports.study.app import create_app
from reports.study.db import StudyDB


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_fixture_study(tmp_path_factory.mktemp("study"), per_rater=4)


def _client(study) -> TestClient:
    return TestClient(create_app(study))


def _join(c: TestClient) -> dict:
    r = c.post("/api/rater")
    assert r.status_code == 200
    return c.get("/api/next").json()


def test_page_and_rater(study):
    c = _client(study)
    r = c.get("/")
    assert r.status_code == 200 and "ArrowLeft" in r.text and "progress" in r.text
    s = _join(c)
    assert s["done"] == 0 and s["total"] == 6  # 4 test pairs + 2 catch trials
    assert c.post("/api/rater").json() == {"rater_id": s["rater_id"], "new": False}  # same browser, same rater
    assert c.get(s["trial"]["left"]).headers["content-type"] == "image/png"


def test_answers_rejections(study):
    a, b = _client(study), _client(study)
    sa, sb = _join(a), _join(b)
    pa = sa["trial"]["pair_id"]
    r = a.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": pa, "side": "left", "ms": 900})
    assert r.status_code == 200 and r.json()["done"] == 1
    # the same pair again, either side
    for side in ("left", "right"):
        r = a.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": pa, "side": side, "ms": 900})
        assert r.status_code == 409
    # unknown pair
    r = a.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": "ffffffffffff", "side": "left", "ms": 900})
    assert r.status_code == 404
    # another rater's id (a's cookie, b's id) and b answering for a's pair under a's id
    r = a.post("/api/answer", json={"rater_id": sb["rater_id"], "pair_id": sb["trial"]["pair_id"], "side": "left",
                                    "ms": 900})
    assert r.status_code == 403
    r = b.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": pa, "side": "left", "ms": 900})
    assert r.status_code == 403
    # forged ids / cookies
    for cookie in ("deadbeef0000.secret", f"{sa['rater_id']}.wrong-secret", "garbage"):
        c = TestClient(create_app(study))
        c.cookies.set("dipir_rater", cookie)
        assert c.get("/api/next").status_code in (401, 403)
        r = c.post("/api/answer", json={"rater_id": cookie.split(".")[0], "pair_id": pa, "side": "left", "ms": 900})
        assert r.status_code in (401, 403)
    assert TestClient(create_app(study)).get("/api/next").status_code == 401
    # a pair that exists but is not in this rater's assignment (per_rater=4 of 14)
    con = sqlite3.connect(study / "answers.sqlite")
    assigned = {p for (p,) in con.execute("SELECT pair_id FROM assignments WHERE rater_id = ?", (sa["rater_id"],))}
    import json

    all_ids = [p["pair_id"] for p in json.loads((study / "manifest.json").read_text())["pairs"]]
    other = next(p for p in all_ids if p not in assigned)
    r = a.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": other, "side": "left", "ms": 900})
    assert r.status_code == 404
    # malformed
    r = a.post("/api/answer", json={"rater_id": sa["rater_id"], "pair_id": sa["trial"]["pair_id"], "side": "up",
                                    "ms": 900})
    assert r.status_code == 400  # malformed: 400 naming the field, input not echoed
    n = con.execute("SELECT COUNT(*) FROM answers WHERE rater_id = ?", (sa["rater_id"],)).fetchone()[0]
    assert n == 1


def test_answers_survive_a_new_app(study):
    a = _client(study)
    s = _join(a)
    a.post("/api/answer", json={"rater_id": s["rater_id"], "pair_id": s["trial"]["pair_id"], "side": "right",
                                "ms": 900})
    cookie = a.cookies.get("dipir_rater")
    b = TestClient(create_app(study))  # a "restarted" server on the same folder
    b.cookies.set("dipir_rater", cookie)
    s2 = b.get("/api/next").json()
    assert s2["rater_id"] == s["rater_id"] and s2["done"] == 1 and s2["trial"]["pair_id"] != s["trial"]["pair_id"]


def test_answers_faster_than_min_ms_are_refused(study):
    """A held key sent answers 7-96 ms apart; the server took them. Below MIN_MS is a 422 that says
    why, and nothing is recorded; MIN_MS itself is kept."""
    from reports.study.page import MIN_MS

    c = _client(study)
    s = _join(c)
    body = {"rater_id": s["rater_id"], "pair_id": s["trial"]["pair_id"], "side": "left"}
    for ms in (0, 7, MIN_MS - 1):
        r = c.post("/api/answer", json={**body, "ms": ms})
        assert r.status_code == 422, (ms, r.status_code)
        assert f"at least {MIN_MS} ms" in r.json()["detail"]
    assert c.get("/api/next").json()["done"] == 0
    r = c.post("/api/answer", json={**body, "ms": MIN_MS})
    assert r.status_code == 200 and r.json()["done"] == 1
    con = sqlite3.connect(study / "answers.sqlite")
    assert con.execute("SELECT ms FROM answers WHERE rater_id = ?", (s["rater_id"],)).fetchall() == [(MIN_MS,)]


def test_ms_must_be_a_json_integer(study):
    """`"ms": true` was stored as 1 (lenient parsing); a bool, a float, a string or no ms at all is
    a 400 naming the field."""
    c = _client(study)
    s = _join(c)
    body = {"rater_id": s["rater_id"], "pair_id": s["trial"]["pair_id"], "side": "left"}
    for bad in ({"ms": True}, {"ms": False}, {"ms": 900.0}, {"ms": 900.5}, {"ms": "900"}, {"ms": None}, {}):
        r = c.post("/api/answer", json={**body, **bad})
        assert r.status_code == 400, (bad, r.status_code)
        assert r.json()["detail"] == "invalid request: ms", bad
    assert c.get("/api/next").json()["done"] == 0


def test_favicon_is_no_content(study):
    r = _client(study).get("/favicon.ico")  # was a 404: a console error on every page load
    assert r.status_code == 204 and r.content == b""


TRAVERSALS = [
    "/../../etc/passwd", "/images/../../etc/passwd", "/images/../manifest.json", "/%2e%2e/%2e%2e/etc/passwd",
    "/images/%2e%2e/%2e%2e/etc/passwd", "/images/..%2f..%2fetc%2fpasswd", "/images/%2e%2e%2fmanifest.json",
    "/images/%252e%252e%252fmanifest.json", "/images/..%5c..%5cetc%5cpasswd", "/images/%2fetc%2fpasswd",
    "/images//etc/passwd", "/images/answers.sqlite", "/manifest.json", "/answers.sqlite", "/images/",
    "/images/..", "/static/../../etc/passwd", "/images/%c0%ae%c0%ae/etc/passwd",
]


def test_path_traversal_on_real_server(study):
    port = free_port()
    proc = start_server(study, port)
    try:
        # bound to localhost only by default
        addrs = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"}
        assert addrs == {"127.0.0.1"}
        for path in TRAVERSALS:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("GET", path, skip_accept_encoding=True)  # sent byte for byte, no normalization
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            assert 400 <= resp.status < 500, (path, resp.status)
            assert b"root:" not in body and b"pairs" not in body and b"SQLite" not in body, path
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
    finally:
        stop_server(proc)


def test_body_limit_nan_and_security_headers(study):
    from reports.study.guard import inline_hashes
    from reports.study.page import PAGE

    c = _client(study)
    big = b'{"rater_id": "x", "pair_id": "' + b"p" * (1 << 20) + b'", "side": "left"}'
    r = c.post("/api/answer", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 200  # nothing echoed back
    # the same without Content-Length (chunked): counted while reading
    r = c.post("/api/answer", content=iter([b"x" * 40_000] * 3), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # NaN in a JSON body, no cookie: 400 naming the field (it was a 500: NaN cannot be echoed as JSON)
    for body in (b'{"rater_id": "x", "pair_id": "y", "side": "left", "ms": NaN}', b'{"rater_id": NaN}', b"{nope"):
        r = c.post("/api/answer", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body, r.status_code)
        assert r.json()["detail"].startswith("invalid request")
    assert "ms" in c.post("/api/answer", content=b'{"rater_id": "x", "pair_id": "y", "side": "left", "ms": NaN}',
                          headers={"content-type": "application/json"}).json()["detail"]
    # headers on the page, the API, images and errors alike
    s = _join(c)
    for resp in (c.get("/"), c.get("/api/next"), c.get(s["trial"]["left"]), c.get("/images/nope.png"),
                 c.post("/api/answer", content=big)):
        assert resp.headers["x-content-type-options"] == "nosniff"
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and all(h in csp for h in inline_hashes(PAGE, "script"))


def test_new_raters_are_rate_limited_and_capped(study, tmp_path):
    from reports.study.guard import ServerLimits

    app = create_app(study, ServerLimits(new_raters_per_minute=3))
    codes = [TestClient(app).post("/api/rater").status_code for _ in range(5)]  # fresh browsers, one address
    assert codes == [200, 200, 200, 429, 429]
    c = TestClient(app)
    assert "a minute" in c.post("/api/rater").json()["detail"]
    # a returning rater (valid cookie) is never limited
    rid = TestClient(create_app(study)).post("/api/rater")
    back = TestClient(app)
    back.cookies.set("dipir_rater", rid.cookies["dipir_rater"])
    assert back.post("/api/rater").json() == {"rater_id": rid.json()["rater_id"], "new": False}
    n = len(StudyDB(study / "answers.sqlite").raters())
    capped = TestClient(create_app(study, ServerLimits(max_raters=n)))
    r = capped.post("/api/rater")
    assert r.status_code == 429 and "maximum" in r.json()["detail"]


def test_concurrent_new_raters_never_overshoot_the_cap(study, tmp_path):
    """The cap was checked outside the transaction that adds the rater: requests in the server's
    thread pool all passed the check before any of them wrote, so a study could end with more raters
    than max_raters. Eight browsers arrive at once for the last two places."""
    import shutil
    import threading

    from reports.study.guard import ServerLimits

    mine = tmp_path / "study"
    shutil.copytree(study, mine, ignore=shutil.ignore_patterns("answers.sqlite*"))
    cap = 2
    app = create_app(mine, ServerLimits(max_raters=cap, new_raters_per_minute=1000))
    go, codes = threading.Barrier(8), []

    def arrive():
        c = TestClient(app)
        go.wait()
        codes.append(c.post("/api/rater").status_code)

    threads = [threading.Thread(target=arrive) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200] * cap + [429] * 6
    assert len(StudyDB(mine / "answers.sqlite").raters()) == cap
