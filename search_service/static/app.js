// The search page: builds the request from the form, calls the JSON API and paints the results
// (thumbnail grid with the best patch box, or moments with a timeline) and the full-frame viewer.
import { api, apiJson, lazyImage, setImage } from "/static/api.js";
import { renderMoments } from "/static/moments.js";

const $ = (id) => document.getElementById(id);
const state = { file: null, likeId: null, health: null };

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// 83450 -> "1:23.450"
export function clock(ms) {
  if (ms === null || ms === undefined) return "no time";
  const s = ms / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(3).padStart(6, "0")}`;
}

const fixed = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function banner(lines, error = false) {
  const node = $("banner");
  node.hidden = lines.length === 0;
  node.className = error ? "error" : "";
  node.textContent = lines.join(" ");
}

// -- service state: which model, whether the index is open and holds frames ---------------------

async function refreshHealth() {
  let body;
  try {
    body = await (await api("/healthz")).json();
  } catch {
    banner(["The search service does not answer."], true);
    setTimeout(refreshHealth, 3000);
    return;
  }
  state.health = body;
  const config = body.config || {};
  const model = $("model");
  const kind = config.weights_kind;
  model.textContent = kind === "random" ? "random weights" : kind === "synthetic-world" ? "offline demo model" : config.model_id;
  model.className = `badge ${kind === "random" ? "bad" : kind === "synthetic-world" ? "warn" : "good"}`;
  model.title = `${config.model_id}: ${config.weights_description || ""}`;
  const lines = [];
  if (kind === "random") lines.push(`Model ${config.model_id} has random weights: it has learned nothing and results are meaningless.`);
  if (kind === "synthetic-world") lines.push(`Offline demo model ${config.model_id}: ${config.weights_description}.`);
  const info = $("indexinfo");
  if (!body.ok) {
    info.textContent = "index busy";
    info.className = "badge bad";
    lines.push(`The index is not open yet: ${body.index_error}. Retrying…`);
    setTimeout(refreshHealth, 2000);
  } else if (body.frames_indexed === 0) {
    info.textContent = "index empty";
    info.className = "badge warn";
    showEmpty("The index is empty: no frames have been indexed yet. Run the pipeline (./dev main) or ingest frames, then search.");
    setTimeout(refreshHealth, 5000);  // the badge turns to the frame count once frames arrive
  } else {
    info.textContent = body.frames_indexed === undefined ? "index open" : `${body.frames_indexed.toLocaleString()} frames`;
    info.className = "badge good";
  }
  showGeneration(body.generation);
  banner(lines, !body.ok);
}

// Which embedding generation answers, and how far the next one (a backfill with another model) is.
function showGeneration(generation) {
  const node = $("generation");
  // Only where there is something to tell: another generation serves, or one is being filled.
  node.hidden = !generation || (generation.serving === "base" && !(generation.others || []).length && !generation.error);
  if (!generation) return;
  const next = (generation.others || []).map((g) => `${g.name} (${g.model}): ${g.published} of ${g.of} videos`);
  node.textContent = `generation ${generation.serving}` + (next.length ? ` · next ${next.join(", ")}` : "");
  node.title = `answering from ${generation.serving} (${generation.model})` + (generation.error ? `; ${generation.error}` : "");
  node.className = `badge ${generation.error ? "warn" : ""}`;
  clearTimeout(state.generationTimer);
  state.generationTimer = setTimeout(refreshHealth, 15000);  // a cut-over shows up without a reload
}

function showEmpty(text) {
  const results = $("results");
  results.replaceChildren(el("div", "empty", text));
  results.hidden = false;
  $("moments").hidden = true;
}

// -- the request ---------------------------------------------------------------------------------

function intOrNull(id, scale = 1) {
  const value = $(id).value.trim();
  return value === "" ? null : Math.round(Number(value) * scale);
}

function filters() {
  const out = {};
  const videos = $("videos").value.split(/[\s,]+/).filter(Boolean).map(Number);
  if (videos.length) out.video_ids = videos;
  const fields = { frame_id_min: ["fmin", 1], frame_id_max: ["fmax", 1], timestamp_min_ms: ["tmin", 1000], timestamp_max_ms: ["tmax", 1000] };
  for (const [name, [id, scale]] of Object.entries(fields)) {
    const value = intOrNull(id, scale);
    if (value !== null) out[name] = value;
  }
  return out;
}

function params() {
  const moments = $("viewmoments").checked;
  return {
    top_k: Math.min(100, Math.max(1, intOrNull("topk") || 24)),
    rerank: $("rerank").checked,
    rerank_alpha: Number($("alpha").value),
    group_by: moments ? "moments" : "frames",
    moment_gap_ms: intOrNull("gap", 1000) ?? 2000,
    ...filters(),
  };
}

function jsonPost(body) {
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

function request() {
  const text = $("query").value.trim();
  const p = params();
  if (state.file) {
    const form = new FormData();
    form.append("file", state.file);
    for (const [k, v] of Object.entries(p)) form.append(k, Array.isArray(v) ? v.join(",") : String(v));
    if (text) form.append("text_query", text);
    return [text ? "/search/hybrid/upload" : "/search/image/upload", { method: "POST", body: form }];
  }
  if (state.likeId) {
    return text ? ["/search/hybrid", jsonPost({ ...p, text_query: text, image_id: state.likeId })]
      : ["/search/image", jsonPost({ ...p, image_id: state.likeId })];
  }
  if (text) return ["/search/text", jsonPost({ ...p, query: text })];
  return [null, null];
}

async function search(event) {
  if (event) event.preventDefault();
  const [path, options] = request();
  if (!path) {
    status("Type what to find, give an image, or choose “More like this” on a result.");
    return;
  }
  status("Searching…");
  delete $("results").dataset.paintMs;
  $("results").setAttribute("aria-busy", "true");
  let body;
  try {
    body = await apiJson(path, options);
  } catch (error) {
    $("results").removeAttribute("aria-busy");
    if (error.status === 503) refreshHealth();
    status(`Search failed (${error.status || "network"}): ${error.message}`, true);
    return;
  }
  const received = performance.now();
  render(body);
  // Painted: the frame after the DOM change. Kept for the browser tests' 300 ms check.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    $("results").dataset.paintMs = String(Math.round(performance.now() - received));
    $("results").removeAttribute("aria-busy");
  }));
}

// -- results ---------------------------------------------------------------------------------------

function boxEl(box, width, height) {
  const [x, y, w, h] = box;
  const node = el("div", "box");
  Object.assign(node.style, { left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%`, width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%` });
  return node;
}

export function thumb(result, url = result.thumbnail_url) {
  const node = el("div", "thumb");
  if (result.width && result.height) node.style.aspectRatio = `${result.width} / ${result.height}`;
  node.append(lazyImage(url, result.image_id));
  if (result.best_patch_box && result.width) node.append(boxEl(result.best_patch_box, result.width, result.height));
  node.addEventListener("click", () => openViewer(result));
  return node;
}

function card(result) {
  const node = el("article", "hit");
  node.dataset.imageId = result.image_id;
  node.tabIndex = 0;
  node.append(thumb(result));
  node.append(el("div", "scores", `fused ${fixed(result.score)} · global ${fixed(result.global_score)} · patch ${fixed(result.maxsim_score)}`));
  const meta = el("div", "meta");
  meta.append(el("span", "id", result.image_id), el("span", "time", clock(result.timestamp_ms)), el("span", "score", fixed(result.score)));
  const like = el("button", "like", "More like this");
  like.type = "button";
  like.addEventListener("click", () => moreLike(result));
  meta.append(like);
  node.append(meta);
  return node;
}

function render(body) {
  const results = $("results");
  const moments = $("moments");
  const count = body.moments ? `${body.moments.length} moments from ${body.total} frames` : `${body.total} results`;
  status(`${count} · ${body.query_type}${body.rerank_enabled ? " + patch rerank" : ""} · ${body.duration_ms.toFixed(0)} ms on the server`);
  if (body.total === 0) {
    const filtered = Object.keys(filters()).length > 0;
    if (state.health && state.health.frames_indexed === 0) showEmpty("The index is empty: no frames have been indexed yet. Run the pipeline (./dev main) or ingest frames, then search.");
    else showEmpty(filtered ? "No frames match these filters." : "No results.");
    return;
  }
  if (body.moments) {
    results.hidden = true;
    moments.hidden = false;
    renderMoments(moments, body.moments, body.results);
    return;
  }
  moments.hidden = true;
  results.hidden = false;
  results.replaceChildren(...body.results.map(card));
}

// -- the full frame ------------------------------------------------------------------------------

export function openViewer(result) {
  const dialog = $("viewer");
  const full = $("full");
  full.removeAttribute("src");
  setImage(full, `/frames/${result.image_id}?size=1600`);
  const box = $("fullbox");
  box.hidden = !(result.best_patch_box && result.width);
  if (!box.hidden) box.replaceWith(Object.assign(boxEl(result.best_patch_box, result.width, result.height), { id: "fullbox" }));
  const score = result.score === undefined ? "" : ` · score ${fixed(result.score)}`;
  $("fullcaption").textContent = `${result.image_id} · video ${result.video_id ?? "?"}, frame ${result.frame_id} · at ${clock(result.timestamp_ms)}${score}`;
  $("fulllike").onclick = () => { dialog.close(); moreLike(result); };
  if (!dialog.open) dialog.showModal();
}

// -- query image: file (picker, drop, paste) or an indexed frame ("more like this") --------------

function showChip(label, src) {
  $("querychip").hidden = false;
  $("querylabel").textContent = label;
  if (src) $("querythumb").src = src; else $("querythumb").removeAttribute("src");
}

function setFile(file) {
  if (!file || !file.type.startsWith("image/")) { status("That is not an image.", true); return; }
  state.file = file;
  state.likeId = null;
  showChip(file.name || "pasted image", URL.createObjectURL(file));
  search();
}

export function moreLike(result) {
  state.file = null;
  state.likeId = result.image_id;
  $("query").value = "";
  showChip(`like ${result.image_id}`, null);
  if (result.thumbnail_url) setImage($("querythumb"), result.thumbnail_url);
  search();
}

function clearImage() {
  state.file = null;
  state.likeId = null;
  $("querychip").hidden = true;
  $("file").value = "";
}

function wire() {
  $("search").addEventListener("submit", search);
  $("file").addEventListener("change", () => setFile($("file").files[0]));
  $("clearimage").addEventListener("click", clearImage);
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) document.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); setFile(item.getAsFile()); }
  });
  const alpha = () => { $("alphaout").value = Number($("alpha").value).toFixed(2); $("alpha").disabled = !$("rerank").checked; };
  $("alpha").addEventListener("input", alpha);
  $("rerank").addEventListener("change", alpha);
  $("clearfilters").addEventListener("click", () => { for (const id of ["videos", "fmin", "fmax", "tmin", "tmax"]) $(id).value = ""; });
  $("fullclose").addEventListener("click", () => $("viewer").close());
  alpha();
}

wire();
refreshHealth();
