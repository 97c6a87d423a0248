"""The rater's page: one static HTML file, no external assets. Click an image or press ←/→."""

MAX_MS = 3_600_000  # the longest time on one trial an answer records (the server's bound; the page caps at it)

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
let trial = null, busy = false, shown = 0, raterId = null;
const $ = (id) => document.getElementById(id);
async function api(path, body) {
  const opt = body ? {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)} : {};
  const r = await fetch(path, opt);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || r.status);
  return data;
}
function show(state) {
  $("progress").textContent = state.done + " / " + state.total;
  $("fill").style.width = (state.total ? 100 * state.done / state.total : 100) + "%";
  trial = state.trial;
  if (!trial) {
    $("pair").style.display = "none";
    $("q").textContent = "All done, thank you!";
    document.body.dataset.finished = "1";
    return;
  }
  let loaded = 0;
  const ready = () => { if (++loaded === 2) { busy = false; shown = performance.now();
                                              document.body.dataset.pair = trial.pair_id; } };
  busy = true;
  $("limg").onload = ready; $("rimg").onload = ready;
  $("limg").src = trial.left; $("rimg").src = trial.right;
}
async function answer(side) {
  if (busy || !trial) return;
  busy = true;
  try {
    show(await api("/api/answer", {rater_id: raterId, pair_id: trial.pair_id, side: side,
                                   // the server keeps times up to MAX_MS: a trial left open longer still counts
                                   ms: Math.min(Math.round(performance.now() - shown), __MAX_MS__)}));
    $("msg").textContent = "";
  } catch (e) {
    $("msg").textContent = "Could not save the answer (" + e.message + "); reload the page.";
    busy = false;
  }
}
$("left").onclick = () => answer("left");
$("right").onclick = () => answer("right");
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowLeft") { e.preventDefault(); answer("left"); }
  if (e.key === "ArrowRight") { e.preventDefault(); answer("right"); }
});
(async () => {
  try {
    raterId = (await api("/api/rater", {})).rater_id;
    $("rater").textContent = raterId;
    show(await api("/api/next"));
  } catch (e) { $("msg").textContent = "Error: " + e.message; }
})();
</script></body></html>
""".replace("__MAX_MS__", str(MAX_MS))
