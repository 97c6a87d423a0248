"""The rater's page: one static HTML file, no external assets. Click an image or press ←/→.

One deliberate act answers one pair: a held key (auto-repeat) or a key never released answers at
most once, Enter/Space on the button last clicked do nothing (a keyboard user's Tab + Enter/Space
answers once: every click unfocuses its button), and nothing counts before the pair
has been on screen MIN_MS (the server refuses shorter times too). An image that fails to load is
retried a few times with a message; until the pair is on screen nothing can be answered.
"""

MAX_MS = 3_600_000  # the longest time on one trial an answer records (the server's bound; the page caps at it)
MIN_MS = 300  # the shortest time a pair must be on screen before an answer counts (page and server)
LOAD_RETRIES = 3  # tries again after a failed image load, then asks the rater to reload

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Which image looks more realistic?</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#1d1d1d;color:#eee;text-align:center}
header{padding:12px}#q{font-size:20px;margin:6px}
#bar{width:60%;height:8px;background:#444;margin:8px auto;border-radius:4px;overflow:hidden}
#fill{height:100%;background:#4caf50;width:0}
#pair{display:flex;gap:16px;justify-content:center;padding:8px}
#pair button{background:none;border:3px solid #555;padding:0;cursor:pointer;max-width:46vw}
#pair button:hover,#pair button:focus{border-color:#4caf50}
#pair img{display:block;width:44vw;max-width:900px;height:auto;max-height:75vh;object-fit:contain}
.hint{color:#aaa;font-size:14px}#msg{min-height:1.5em;color:#f88}
</style></head><body>
<header><div id="q">Which image looks more realistic?</div>
<div class="hint">Click the image, or press &larr; (left) / &rarr; (right).</div>
<div id="bar"><div id="fill"></div></div><div id="progress">loading…</div></header>
<div id="pair">
 <button id="left" aria-label="left image"><img id="limg" alt="left"></button>
 <button id="right" aria-label="right image"><img id="rimg" alt="right"></button>
</div>
<div id="msg"></div><div class="hint">rater id: <span id="rater">…</span></div>
<script>
let trial = null, busy = false, shown = 0, raterId = null, loading = 0;
const held = new Set();  // answer keys down now: a second answer needs a keyup first
const $ = (id) => document.getElementById(id);
async function api(path, body) {
  const opt = body ? {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)} : {};
  const r = await fetch(path, opt);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || r.status);
  return data;
}
function load(img, url, gen, ready) {
  let tries = 0;
  img.onload = () => { if (gen === loading) ready(); };
  img.onerror = () => {
    if (gen !== loading) return;
    if (tries >= __LOAD_RETRIES__) {
      $("msg").textContent = "Could not load the image. Please reload the page.";
      return;
    }
    tries += 1;
    $("msg").textContent = "Could not load the image \u2014 retrying\u2026";
    // a new query string so neither the browser nor a proxy answers from a cached failure
    setTimeout(() => { if (gen === loading) img.src = url + "?retry=" + tries; }, 500 * tries);
  };
  img.src = url;
}
function show(state) {
  $("progress").textContent = state.done + " / " + state.total;
  $("fill").style.width = (state.total ? 100 * state.done / state.total : 100) + "%";
  $("msg").textContent = "";
  trial = state.trial;
  const gen = ++loading;
  if (!trial) {
    $("pair").style.display = "none";
    $("q").textContent = "All done, thank you!";
    document.body.dataset.finished = "1";
    return;
  }
  let loaded = 0;
  const ready = () => {
    if (++loaded !== 2) return;
    $("msg").textContent = "";
    busy = false; shown = performance.now();
    document.body.dataset.pair = trial.pair_id;
    // answerable from here (the margin covers timer vs. clock rounding); tests wait for this
    setTimeout(() => { if (gen === loading) document.body.dataset.ready = trial.pair_id; }, __MIN_MS__ + 20);
  };
  busy = true;
  load($("limg"), trial.left, gen, ready); load($("rimg"), trial.right, gen, ready);
}
async function answer(side) {
  if (busy || !trial) return;
  const ms = Math.round(performance.now() - shown);
  if (ms < __MIN_MS__) return;  // too soon to have looked at the pair: ignored, the server would refuse it
  busy = true;
  try {
    show(await api("/api/answer", {rater_id: raterId, pair_id: trial.pair_id, side: side,
                                   // the server keeps times up to MAX_MS: a trial left open longer still counts
                                   ms: Math.min(ms, __MAX_MS__)}));
  } catch (e) {
    $("msg").textContent = "Could not save the answer (" + e.message + "); reload the page.";
    busy = false;
  }
}
for (const side of ["left", "right"]) {
  $(side).onclick = (e) => {
    // Unfocused after every click, by pointer or by Enter/Space: a focused button would answer again on
    // a held or repeated key, and its border marks a side. Tab + Enter/Space (a keyboard user's way to
    // a button) answers once; the next pair needs a new Tab.
    e.currentTarget.blur();
    answer(side);
  };
}
document.addEventListener("keydown", (e) => {
  const side = e.key === "ArrowLeft" ? "left" : e.key === "ArrowRight" ? "right" : null;
  if (!side) return;
  e.preventDefault();
  const first = !e.repeat && held.size === 0;
  held.add(e.key);
  if (first) answer(side);  // auto-repeat, or a second key while one is held, never answers
});
document.addEventListener("keyup", (e) => { held.delete(e.key); });
// a key released in another window or tab sends no keyup here
window.addEventListener("blur", () => held.clear());
document.addEventListener("visibilitychange", () => held.clear());
(async () => {
  try {
    raterId = (await api("/api/rater", {})).rater_id;
    $("rater").textContent = raterId;
    show(await api("/api/next"));
  } catch (e) { $("msg").textContent = "Error: " + e.message; }
})();
</script></body></html>
""".replace("__MAX_MS__", str(MAX_MS)).replace("__MIN_MS__", str(MIN_MS)) \
    .replace("__LOAD_RETRIES__", str(LOAD_RETRIES))
