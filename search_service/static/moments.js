// The moments view: one row per moment (a video's adjacent hits), its best frame, a timeline of the
// video's hits with the moment's segment, and a strip of the moment's frames.
import { clock, el, openViewer, thumb } from "/static/app.js";

function pct(ms, span) {
  return `${(100 * ms) / span}%`;
}

// The timeline spans 0 .. the latest hit of the video in this answer (the video's length is not known).
function timeline(moment, allOfVideo, span, byId) {
  const bar = el("div", "timeline");
  bar.title = `0:00 – ${clock(span)}`;
  for (const other of allOfVideo) {
    if (other.start_ms === null) continue;
    const seg = el("div", "seg");
    Object.assign(seg.style, { left: pct(other.start_ms, span), width: pct(Math.max(0, other.end_ms - other.start_ms), span) });
    if (other !== moment) seg.style.opacity = "0.3";
    bar.append(seg);
  }
  for (const frame of moment.frames) {
    if (frame.timestamp_ms === null) continue;
    const tick = el("div", frame.image_id === moment.best_image_id ? "tick best" : "tick");
    tick.style.left = pct(frame.timestamp_ms, span);
    tick.title = `${frame.image_id} at ${clock(frame.timestamp_ms)} · ${frame.score.toFixed(3)}`;
    tick.addEventListener("click", () => openViewer(byId.get(frame.image_id) || { ...frame, video_id: moment.video_id }));
    bar.append(tick);
  }
  return bar;
}

export function renderMoments(container, moments, results) {
  const byId = new Map(results.map((r) => [r.image_id, r]));
  for (const m of moments) byId.set(m.best.image_id, m.best);
  const byVideo = new Map();
  for (const m of moments) byVideo.set(m.video_id, [...(byVideo.get(m.video_id) || []), m]);
  const rows = moments.map((moment) => {
    const ofVideo = byVideo.get(moment.video_id);
    const span = Math.max(1, ...ofVideo.map((m) => m.end_ms || 0)) * 1.05;
    const row = el("article", "moment");
    row.dataset.videoId = String(moment.video_id);
    row.append(thumb(moment.best));
    const right = el("div");
    const range = moment.start_ms === null ? "no timestamp" : `${clock(moment.start_ms)} – ${clock(moment.end_ms)}`;
    right.append(el("h3", null, `Video ${moment.video_id} · ${range} · score ${moment.score.toFixed(3)} · ${moment.frames.length} frame${moment.frames.length === 1 ? "" : "s"}`));
    right.append(timeline(moment, ofVideo, span, byId));
    const strip = el("div", "strip");
    for (const frame of moment.frames.slice(0, 12)) {
      const known = byId.get(frame.image_id) || { ...frame, video_id: moment.video_id, width: moment.best.width, height: moment.best.height };
      strip.append(thumb({ ...known, best_patch_box: known.best_patch_box }, `/frames/${frame.image_id}?size=160`));
    }
    right.append(strip);
    row.append(right);
    return row;
  });
  container.replaceChildren(...rows);
}
