// lensflow Studio: the little JavaScript of the server-rendered pages (no build step).
"use strict";

const boot = JSON.parse(document.getElementById("boot")?.textContent || "{}");
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(method, url, body, headers = {}) {
  const opts = { method, headers: { ...headers } };
  if (body instanceof FormData || body instanceof Blob) opts.body = body;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(url, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(detail || `HTTP ${r.status}`);
  }
  return data;
}

const pct = (p) => `${(100 * p).toFixed(1)}%`;

// -- home page ------------------------------------------------------------------------------
function initHome() {
  $("#create-model").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("#model-name").value.trim();
    const categories = $("#model-categories").value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      const model = await api("POST", "/api/models", { name, categories });
      location.href = `/models/${model.id}`;
    } catch (e) {
      $("#create-error").textContent = e.message;
    }
  });
}

// -- model page -----------------------------------------------------------------------------
let model = boot.model;
let stream = null;
let recordTimer = null;
let liveTimer = null;

function renderModel() {
  const badge = $("#model-title .badge");
  badge.className = `badge ${model.state}`;
  badge.textContent = model.state === "has_images" ? "has images: ready to train" : model.state;
  $("#model-error").textContent = model.error || (model.job && model.job.error) || "";
  const box = $("#categories");
  box.replaceChildren(...model.categories.map(categoryCard));
  const busy = model.state === "queued" || model.state === "training";
  $("#train").disabled = busy;
  $("#download").classList.toggle("disabled", !model.metrics);
  renderProgress();
}

function categoryCard(cat) {
  const input = el("input", { type: "file", multiple: "", accept: "image/*,.zip" });
  input.addEventListener("change", () => upload(cat.name, input.files));
  const zone = el("div", { class: "dropzone", "data-category": cat.name },
    el("b", {}, cat.name), " ", el("span", { class: "count" }, `${cat.count} photos`),
    el("p", { class: "muted" }, "Drop photos or a zip here, or "), input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload(cat.name, e.dataTransfer.files);
  });
  const rec = el("button", { type: "button", class: "record" }, "Hold to record");
  const start = (e) => { e.preventDefault(); startRecording(cat.name, rec); };
  rec.addEventListener("pointerdown", start);
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) rec.addEventListener(ev, stopRecording);
  zone.append(rec);
  return zone;
}

function showUploadResult(res) {
  const box = $("#upload-result");
  const lines = [el("p", {}, `${res.counts.accepted} accepted, ${res.counts.rejected} rejected`)];
  if (res.rejected.length) {
    lines.push(el("ul", { class: "rejected" },
      ...res.rejected.slice(0, 50).map((r) => el("li", {}, `${r.name}: ${r.reason}`))));
  }
  box.replaceChildren(...lines);
}

async function upload(category, files) {
  if (!files || !files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  try {
    const res = await api("POST", `/api/models/${model.id}/images?category=${encodeURIComponent(category)}`, form);
    model = res.model;
    showUploadResult(res);
    renderModel();
  } catch (e) {
    $("#upload-result").replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// -- webcam ----------------------------------------------------------------------------------
async function startWebcam() {
  const video = $("#webcam");
  if (video.srcObject) return video;
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    await video.play();
  } catch (e) {
    $("#upload-result").replaceChildren(el("p", { class: "error" }, `webcam: ${e.message}`));
    return null;
  }
  return video;
}

function grabFrame(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth || 640;
  canvas.height = video.videoHeight || 480;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function startRecording(category, button) {
  const video = await startWebcam();
  if (!video) return;
  button.classList.add("recording");
  stopRecording();
  let sent = 0;
  let accepted = 0;
  const url = `/api/models/${model.id}/images?category=${encodeURIComponent(category)}&filename=webcam.jpg`;
  const tick = async () => {
    const blob = await grabFrame(video);
    if (!blob) return;
    sent += 1;
    try {
      const res = await api("POST", url, blob, { "Content-Type": "image/jpeg" });
      accepted += res.counts.accepted;
      model = res.model;
      const zone = document.querySelector(`.dropzone[data-category="${CSS.escape(category)}"] .count`);
      if (zone) zone.textContent = `${model.categories.find((c) => c.name === category).count} photos`;
      $("#upload-result").textContent = `webcam: ${accepted} of ${sent} frames kept for ${category}`;
    } catch (e) {
      $("#upload-result").textContent = `webcam: ${e.message}`;
    }
  };
  recordTimer = setInterval(tick, 200);
  tick();
}

function stopRecording() {
  if (recordTimer) {
    clearInterval(recordTimer);
    recordTimer = null;
    document.querySelectorAll(".record.recording").forEach((b) => b.classList.remove("recording"));
    renderModel();
  }
}

// -- training --------------------------------------------------------------------------------
function renderProgress() {
  const job = model.job;
  const bar = $("#progress-bar");
  const text = $("#progress-text");
  if (!job) { bar.style.width = "0%"; text.textContent = ""; return; }
  const p = job.progress || {};
  const done = model.state === "ready" && job.state === "done";
  bar.style.width = `${done ? 100 : p.percent || 0}%`;
  let t = `${job.state}: ${p.stage || ""} ${p.message || ""}`;
  if (p.eta_s != null && !done) t += ` · about ${Math.ceil(p.eta_s)} s left`;
  if (job.state === "failed") t = `failed: ${job.error}`;
  text.textContent = done ? "ready" : t;
}

function follow() {
  if (stream) stream.close();
  stream = new EventSource(`/api/models/${model.id}/events`);
  stream.onmessage = (ev) => {
    model = JSON.parse(ev.data);
    renderModel();
    if (model.state === "ready") loadReport();
  };
  // The server ends the stream once the model settles; closing here stops the auto-reconnect.
  // If it ended early (server restart), fall back to polling.
  stream.onerror = () => {
    if (!stream) return;
    stream.close();
    stream = null;
    if (model.state === "queued" || model.state === "training") setTimeout(poll, 1000);
  };
}

async function poll() {
  model = await api("GET", `/api/models/${model.id}`);
  renderModel();
  if (model.state === "queued" || model.state === "training") follow();
  else if (model.state === "ready") loadReport();
}

async function train() {
  try {
    const res = await api("POST", `/api/models/${model.id}/train`, { mode: $("#train-mode").value });
    model = res.model;
    renderModel();
    follow();
  } catch (e) {
    $("#model-error").textContent = e.message;
  }
}

// -- results ---------------------------------------------------------------------------------
async function loadReport() {
  let rep;
  try { rep = await api("GET", `/api/models/${model.id}/report`); } catch (e) { return; }
  const m = rep.metrics;
  const classes = m.classes;
  const head = el("tr", {}, el("th", {}, "true \\ predicted"), ...classes.map((c) => el("th", {}, c)));
  const rows = m.confusion_matrix.map((row, i) =>
    el("tr", {}, el("th", {}, classes[i]),
      ...row.map((v, j) => el("td", { class: i === j ? "diag" : v ? "off" : "" }, v))));
  const perClass = el("table", {}, el("tr", {}, el("th", {}, "category"), el("th", {}, "precision"),
    el("th", {}, "recall"), el("th", {}, "photos")),
    ...classes.map((c) => { const s = m.per_class[c]; return el("tr", {}, el("td", {}, c),
      el("td", {}, pct(s.precision)), el("td", {}, pct(s.recall)), el("td", {}, s.support)); }));
  const mistakes = rep.worst_mistakes.length
    ? el("div", { class: "mistakes" }, ...rep.worst_mistakes.map((w) => el("figure", {},
        el("img", { src: `/api/models/${model.id}/report/images/${encodeURIComponent(w.id)}`, alt: w.id }),
        el("figcaption", {}, `${w.true} → ${w.predicted} (${pct(w.probability)})`))))
    : el("p", { class: "muted" }, "No mistakes on the held-out photos.");
  $("#metrics").replaceChildren(
    el("p", { id: "accuracy", class: "big" }, `Accuracy ${pct(m.accuracy)} on ${m.n} held-out photos`),
    el("h3", {}, "Confusion matrix"), el("table", { id: "confusion" }, head, ...rows),
    el("h3", {}, "Per category"), perClass,
    el("h3", {}, "Worst mistakes"), mistakes,
    el("p", {}, el("a", { href: rep.report_html, target: "_blank" }, "Full evaluation report")));
  $("#metrics").classList.remove("muted");
  $("#download").classList.remove("disabled");
}

// -- testing ---------------------------------------------------------------------------------
function showPrediction(pred) {
  const bars = pred.top_k.map((t) => el("div", { class: "bar-row" },
    el("span", { class: "bar-label" }, t.label),
    el("span", { class: "bar" }, el("span", { style: `width:${(100 * t.probability).toFixed(1)}%` })),
    el("span", { class: "bar-value" }, pct(t.probability))));
  $("#test-result").replaceChildren(
    el("p", { id: "prediction", class: "big" }, pred.unknown
      // the bundle's open-set score: the photo looks like none of the trained categories
      ? `not one of your categories (nearest: ${pred.label} ${pct(pred.probability)})`
      : `${pred.label} (${pct(pred.probability)})`), ...bars);
}

async function predictBlob(blob) {
  const res = await api("POST", `/api/models/${model.id}/predict?top_k=3`, blob,
    { "Content-Type": blob.type || "application/octet-stream" });
  const pred = res.predictions[0];
  if (pred.error) throw new Error(pred.error);
  showPrediction(pred);
}

async function testFile() {
  const f = $("#test-file").files[0];
  if (!f) return;
  try { await predictBlob(f); } catch (e) {
    $("#test-result").replaceChildren(el("p", { class: "error" }, e.message));
  }
}

async function toggleLiveTest() {
  const button = $("#test-webcam");
  if (liveTimer) { clearInterval(liveTimer); liveTimer = null; button.textContent = "Live test with webcam"; return; }
  const video = await startWebcam();
  if (!video) return;
  button.textContent = "Stop live test";
  let busy = false;
  liveTimer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try { await predictBlob(await grabFrame(video)); } catch (e) {
      $("#test-result").replaceChildren(el("p", { class: "error" }, e.message));
    } finally { busy = false; }
  }, 300);
}

function initModel() {
  $("#add-category").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      model = await api("POST", `/api/models/${model.id}/categories`, { name: $("#category-name").value.trim() });
      $("#category-name").value = "";
      renderModel();
    } catch (e) { $("#model-error").textContent = e.message; }
  });
  $("#webcam-start").addEventListener("click", startWebcam);
  $("#train").addEventListener("click", train);
  $("#test-file").addEventListener("change", testFile);
  $("#test-webcam").addEventListener("click", toggleLiveTest);
  $("#delete").addEventListener("click", async () => {
    if (!confirm(`Delete model ${model.name} and all its photos?`)) return;
    try { await api("DELETE", `/api/models/${model.id}`); location.href = "/"; } catch (e) {
      $("#model-error").textContent = e.message;
    }
  });
  renderModel();
  if (model.state === "queued" || model.state === "training") follow();
  else if (model.metrics) loadReport();
}

if (boot.page === "home") initHome();
if (boot.page === "model") initModel();
