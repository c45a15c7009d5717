"""Server-rendered pages of the Studio UI; the little JavaScript lives in static/studio.js.

Every value from the database or a user goes through `html.escape` (names are user input).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

STATE_TEXT = {
    "created": "created: add photos",
    "has_images": "has images: ready to train",
    "queued": "queued",
    "training": "training",
    "ready": "ready",
    "error": "error",
}


def _page(title: str, body: str, data: dict[str, Any] | None = None) -> str:
    boot = ""
    if data is not None:
        # JSON inside <script>: escape '<' so a name like "</script>" cannot end the element.
        payload = json.dumps(data).replace("<", "\\u003c")
        boot = f'<script id="boot" type="application/json">{payload}</script>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · lensflow Studio</title>
<link rel="stylesheet" href="/static/studio.css">
<link rel="icon" href="data:,">
</head><body>
<header><a href="/" class="brand">lensflow Studio</a><a href="/docs">API</a></header>
<main>{body}</main>
{boot}<script src="/static/studio.js"></script>
</body></html>"""


def state_badge(state: str) -> str:
    return f'<span class="badge {escape(state)}">{escape(STATE_TEXT.get(state, state))}</span>'


def home(models: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td><a href="/models/{escape(m["id"])}">{escape(m["name"])}</a></td>'
        f"<td>{state_badge(m['state'])}</td>"
        f"<td>{_category_list(m)}</td>"
        f"<td>{_accuracy(m)}</td></tr>"
        for m in models
    )
    table = (
        '<table id="models"><thead><tr><th>Model</th><th>State</th><th>Categories (photos)</th>'
        f"<th>Accuracy</th></tr></thead><tbody>{rows}</tbody></table>"
        if models
        else '<p id="models" class="muted">No models yet: create one below.</p>'
    )
    body = f"""
<h1>Your models</h1>
{table}
<section class="card">
<h2>New model</h2>
<form id="create-model">
  <label>Name <input name="name" id="model-name" required maxlength="100" placeholder="socks"></label>
  <label>Categories <input name="categories" id="model-categories"
    placeholder="left, right (comma-separated)"></label>
  <button type="submit">Create</button>
</form>
<p class="error" id="create-error" role="alert"></p>
</section>"""
    return _page("Models", body, {"page": "home"})


def _category_list(model: dict[str, Any]) -> str:
    return ", ".join(f"{escape(c['name'])} ({c['count']})" for c in model["categories"])


def _accuracy(model: dict[str, Any]) -> str:
    m = model.get("metrics")
    if not m or m.get("accuracy") is None:
        return "–"
    return f"{100 * m['accuracy']:.1f}%"


def model_page(model: dict[str, Any]) -> str:
    mid = escape(model["id"])
    body = f"""
<h1 id="model-title">{escape(model["name"])} {state_badge(model["state"])}</h1>
<p class="error" id="model-error" role="alert">{escape(model.get("error") or "")}</p>

<section class="card">
<h2>1. Photos per category</h2>
<div class="webcam">
  <video id="webcam" autoplay playsinline muted width="320" height="240"></video>
  <div>
    <button type="button" id="webcam-start">Start webcam</button>
    <p class="muted">Hold a category's <b>Hold to record</b> button: a frame every 200 ms.</p>
  </div>
</div>
<div id="categories"></div>
<form id="add-category">
  <input id="category-name" placeholder="new category" maxlength="64">
  <button type="submit">Add category</button>
</form>
<div id="upload-result" class="upload-result"></div>
</section>

<section class="card">
<h2>2. Train</h2>
<label>Mode <select id="train-mode">
  <option value="quick" selected>quick (frozen backbone, seconds)</option>
  <option value="finetune">finetune</option><option value="auto">auto</option>
</select></label>
<button type="button" id="train">Train</button>
<div class="progress"><div id="progress-bar"></div></div>
<p id="progress-text" class="muted"></p>
</section>

<section class="card" id="results">
<h2>3. Results</h2>
<div id="metrics" class="muted">Train the model to see its accuracy.</div>
</section>

<section class="card">
<h2>4. Test</h2>
<input type="file" id="test-file" accept="image/*">
<button type="button" id="test-webcam">Live test with webcam</button>
<div id="test-result"></div>
</section>

<section class="card">
<h2>5. Use it</h2>
<a id="download" class="button disabled" href="/api/models/{mid}/bundle">Download bundle (.zip)</a>
<p class="muted">Unzip, then <code>lensflow serve bundle</code> or <code>lensflow live bundle</code>.</p>
<button type="button" id="delete" class="danger">Delete model</button>
</section>"""
    return _page(model["name"], body, {"page": "model", "model": model})


def login(failed: bool) -> str:
    error = '<p class="error">Wrong key.</p>' if failed else ""
    body = f"""
<h1>Sign in</h1>
<form method="post" action="/login" class="card">
  <label>API key <input type="password" name="key" autofocus></label>
  <button type="submit">Sign in</button>
</form>{error}"""
    return _page("Sign in", body)
