"""Studio REST API against the real app (FastAPI TestClient): models, uploads, security, jobs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lensflow.errors import StudioError
from lensflow.studio.app import StudioConfig, create_app, read_api_keys
from lensflow.studio.jobs import INTERRUPTED, RESTARTED, recover_interrupted
from lensflow.studio.store import Store
from lensflow.studio.uploads import Limits, unsafe_entry
from tests.unit.data.test_download import serve

__all__ = ["serve"]  # the local HTTP server fixture, for the {"urls": [...]} upload


def photo_bytes(sample_folder: Path, label: str, n: int) -> list[tuple[str, bytes]]:
    paths = sorted((sample_folder / "train" / label).glob("*.jpg"))[:n]
    return [(p.name, p.read_bytes()) for p in paths]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # The job worker is started by tests that train; uploads and states need no worker.
    app = create_app(StudioConfig(data_dir=tmp_path / "studio", start_worker=False))
    with TestClient(app) as c:
        yield c


def create(client: TestClient, categories: list[str]) -> dict:
    r = client.post("/api/models", json={"name": "clothes", "categories": categories})
    assert r.status_code == 201, r.text
    return r.json()


def upload(client: TestClient, model_id: str, files: list[tuple[str, bytes]], category: str | None):
    params = {"category": category} if category else {}
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post(f"/api/models/{model_id}/images", params=params, files=multipart)


def test_create_list_get_delete(client: TestClient) -> None:
    model = create(client, ["hat", "shoes"])
    assert model["state"] == "created"
    assert model["categories"] == [{"name": "hat", "count": 0}, {"name": "shoes", "count": 0}]
    assert [m["id"] for m in client.get("/api/models").json()["models"]] == [model["id"]]
    assert client.get(f"/api/models/{model['id']}").json()["name"] == "clothes"
    r = client.post(f"/api/models/{model['id']}/categories", json={"name": "dress"})
    assert [c["name"] for c in r.json()["categories"]] == ["hat", "shoes", "dress"]
    assert client.delete(f"/api/models/{model['id']}").status_code == 200
    assert client.get(f"/api/models/{model['id']}").status_code == 404
    assert "openapi" in client.get("/openapi.json").text


@pytest.mark.parametrize(
    ("categories", "status", "message"),
    [
        (["hat", "Hat"], 409, "repeat"),  # each name is valid: they conflict with each other
        (["../etc"], 400, "not allowed"),
        (["train"], 400, "reserved"),
        (["Validation"], 400, "reserved"),
        ([""], 400, "not allowed"),
        ([" hat"], 400, "not allowed"),
        (["hat."], 400, "not allowed"),
        (["tée"], 400, "ASCII"),
    ],
)
def test_bad_category_names_are_rejected(client: TestClient, categories, status, message) -> None:
    r = client.post("/api/models", json={"name": "m", "categories": categories})
    assert r.status_code == status and message in r.json()["detail"]


def test_the_schema_publishes_the_naming_rule_the_server_applies(client: TestClient) -> None:
    import re

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    pattern = schemas["CreateModel"]["properties"]["categories"]["items"]["pattern"]
    assert schemas["AddCategory"]["properties"]["name"]["pattern"] == pattern
    for name in ["hat", "t-shirt", "a", "A1.b_c+d-e", "trainer", "x" * 64]:
        assert re.search(pattern, name), name
        assert client.post("/api/models", json={"name": "m", "categories": [name]}).is_success
    for name in ["", "_a", "a_", "a.", "x" * 65, "TRAIN", "val", "hat\n", "a b"]:
        assert not re.search(pattern, name), name
        r = client.post("/api/models", json={"name": "m", "categories": [name]})
        assert r.status_code == 400, name


def test_405_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.put("/api/models")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert client.patch("/api/models/x").headers["allow"] == "DELETE, GET"


def test_uploads_accept_good_and_explain_every_rejection(
    client: TestClient, sample_folder: Path
) -> None:
    model = create(client, ["hat", "shoes"])
    mid = model["id"]
    hats = photo_bytes(sample_folder, "hat", 4)
    truncated = hats[0][1][: len(hats[0][1]) // 2]
    files = [
        *hats,
        ("notes.jpg", b"<html>not a photo</html>"),
        ("broken.jpg", truncated),
        ("../../etc/passwd.jpg", hats[0][1]),  # a duplicate, and a hostile name
        ("empty.png", b""),
    ]
    r = upload(client, mid, files, "hat")
    assert r.status_code == 200, r.text
    res = r.json()
    assert [a["name"] for a in res["accepted"]] == [name for name, _ in hats]
    reasons = {x["name"]: x["reason"] for x in res["rejected"]}
    assert reasons["notes.jpg"].startswith("not an image")
    assert "truncated" in reasons["broken.jpg"]
    assert reasons["../../etc/passwd.jpg"].startswith("duplicate of image")
    assert "empty" in reasons["empty.png"]
    assert res["model"]["state"] == "has_images"
    assert res["model"]["categories"][0] == {"name": "hat", "count": 4}
    # Stored under Studio's own names only; the upload name appears nowhere on disk.
    store: Store = client.app.state.store
    stored = sorted(
        p.relative_to(store.model_dir(mid)).parts[:2] for p in store.model_dir(mid).rglob("*.*")
    )
    assert stored == [("images", "hat")] * 4
    image_id = res["accepted"][0]["image_id"]
    assert client.get(f"/api/models/{mid}/images/{image_id}").content == hats[0][1]
    # Unknown or missing categories are rejected per file, with the known ones listed.
    r = upload(client, mid, photo_bytes(sample_folder, "dress", 1), "dress")
    assert "unknown category 'dress' (known: hat, shoes)" in r.json()["rejected"][0]["reason"]
    r = upload(client, mid, photo_bytes(sample_folder, "dress", 1), None)
    assert "no category" in r.json()["rejected"][0]["reason"]


def test_zip_of_class_folders_rejects_path_traversal(
    client: TestClient, sample_folder: Path
) -> None:
    mid = create(client, ["hat", "shoes"])["id"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in photo_bytes(sample_folder, "hat", 2):
            zf.writestr(f"photos/hat/{name}", data)
        for name, data in photo_bytes(sample_folder, "shoes", 2):
            zf.writestr(f"photos/shoes/{name}", data)
        zf.writestr("../evil/hat/x.jpg", b"x")
        zf.writestr("/abs/hat/y.jpg", b"y")
        zf.writestr("photos/hat/readme.txt", b"hello")
        zf.writestr("__MACOSX/photos/hat/._a.jpg", b"meta")
    r = upload(client, mid, [("photos.zip", buf.getvalue())], None)
    res = r.json()
    assert len(res["accepted"]) == 4
    assert sorted(a["category"] for a in res["accepted"]) == ["hat", "hat", "shoes", "shoes"]
    reasons = {x["name"]: x["reason"] for x in res["rejected"]}
    assert set(reasons) == {
        "photos.zip:../evil/hat/x.jpg",
        "photos.zip:/abs/hat/y.jpg",
        "photos.zip:photos/hat/readme.txt",
    }
    assert "'..'" in reasons["photos.zip:../evil/hat/x.jpg"]
    assert "absolute" in reasons["photos.zip:/abs/hat/y.jpg"]
    store: Store = client.app.state.store
    assert not (store.data_dir.parent / "evil").exists()
    assert unsafe_entry("a\\..\\b.jpg") and unsafe_entry("C:/x.jpg") and not unsafe_entry("a/b.jpg")


def test_size_and_count_limits(tmp_path: Path, sample_folder: Path) -> None:
    hats = photo_bytes(sample_folder, "hat", 3)
    limits = Limits(
        max_file_bytes=max(len(d) for _, d in hats[:2]), max_files=2, max_request_bytes=400_000
    )
    app = create_app(StudioConfig(data_dir=tmp_path / "s", limits=limits, start_worker=False))
    with TestClient(app) as client:
        mid = create(client, ["hat"])["id"]
        big = ("big.jpg", hats[0][1] + b"\0" * (limits.max_file_bytes + 1 - len(hats[0][1])))
        res = upload(client, mid, [hats[0], big], "hat").json()
        assert [a["name"] for a in res["accepted"]] == [hats[0][0]]
        assert res["rejected"][0]["reason"].startswith("too large")
        many = upload(client, mid, [hats[1], hats[2], hats[1]], "hat")
        assert many.status_code == 400 and "Too many files" in many.json()["detail"]
        buf = io.BytesIO()  # in a zip, entries past the limit are rejected one by one
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in hats:
                zf.writestr(f"hat/{name}", data)
        res = upload(client, mid, [("three.zip", buf.getvalue())], None).json()
        assert len(res["accepted"]) == 1  # hats[0] is a duplicate, hats[1] new, hats[2] over
        assert [x["reason"][:18] for x in res["rejected"]] == [
            "duplicate of image",
            "more than 2 files ",
        ]
        huge = upload(client, mid, [("huge.jpg", b"\0" * 500_000)], "hat")
        assert huge.status_code == 413


def test_url_upload_uses_the_downloader(client: TestClient, serve, sample_folder: Path) -> None:
    hats = photo_bytes(sample_folder, "hat", 2)
    server = serve(
        {
            "/a.jpg": ("file", hats[0][1], "image/jpeg"),
            "/b.jpg": ("file", hats[1][1], "image/jpeg"),
            "/page.jpg": ("file", b"<html></html>", "text/html"),
        }
    )
    mid = create(client, ["hat"])["id"]
    urls = [server.url(p) for p in ("/a.jpg", "/b.jpg", "/page.jpg", "/missing.jpg")]
    r = client.post(f"/api/models/{mid}/images", json={"urls": urls, "category": "hat"})
    res = r.json()
    assert [a["name"] for a in res["accepted"]] == urls[:2]
    assert [x["reason"].split(":")[0] for x in res["rejected"]] == ["not_image", "http_error 404"]


def test_bad_requests_say_what_to_send(client: TestClient) -> None:
    mid = create(client, ["a", "b"])["id"]
    r = client.post(
        f"/api/models/{mid}/images", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]
    r = client.post(f"/api/models/{mid}/images", json={"files": []})
    assert r.status_code == 400 and "urls" in r.json()["detail"]
    r = client.post(f"/api/models/{mid}/train", json={"mode": "quick"})
    assert r.status_code == 409 and "at least 2 categories" in r.json()["detail"]
    r = client.post(f"/api/models/{mid}/train", json={"mode": "fast"})
    assert r.status_code == 400 and "quick" in r.json()["detail"]
    assert client.post(f"/api/models/{mid}/predict", content=b"x").status_code == 409
    assert client.get(f"/api/models/{mid}/report").status_code == 409
    assert client.get("/api/models/nope").status_code == 404


def test_train_queues_a_job_and_busy_models_refuse_changes(
    client: TestClient, sample_folder: Path
) -> None:
    mid = create(client, ["hat", "shoes"])["id"]
    for label in ("hat", "shoes"):
        assert (
            len(upload(client, mid, photo_bytes(sample_folder, label, 4), label).json()["accepted"])
            == 4
        )
    r = client.post(f"/api/models/{mid}/train", json={"mode": "quick"})
    assert r.status_code == 202
    job = r.json()["job"]
    assert job["state"] == "queued" and r.json()["model"]["state"] == "queued"
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "queued"
    assert client.post(f"/api/models/{mid}/train", json={}).status_code == 409
    assert upload(client, mid, photo_bytes(sample_folder, "hat", 1), "hat").status_code == 409
    assert client.delete(f"/api/models/{mid}").status_code == 409


def test_restart_requeues_an_interrupted_job_once_then_fails_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    mid = store.create_model("m", ["a", "b"])
    job_id = store.create_job(mid, "quick", None)
    store.set_state(mid, "training", job_id=job_id)
    store.update_job(job_id, state="running", pid=999_999_999)  # a pid that runs nothing
    queued = store.create_job(store.create_model("n", ["a", "b"]), "quick", None)

    assert recover_interrupted(Store(tmp_path / "s")) == {job_id: "requeued"}
    job = store.get_job(job_id)
    assert (job["state"], job["restarts"], job["pid"]) == ("queued", 1, None)
    assert job["progress"]["message"] == RESTARTED
    assert store.get_model(mid)["state"] == "queued"
    assert store.get_job(queued)["state"] == "queued"  # waiting jobs survive and run later
    assert store.next_queued_job() == job_id  # it keeps its place in the queue

    store.update_job(job_id, state="running", pid=999_999_999)  # interrupted a second time
    assert recover_interrupted(Store(tmp_path / "s")) == {job_id: "failed"}
    job = store.get_job(job_id)
    assert job["state"] == "failed" and job["error"] == INTERRUPTED
    assert store.get_model(mid)["state"] == "error"


def test_a_data_dir_from_before_restarts_existed_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from lensflow.studio.store import SCHEMA

    (tmp_path / "s").mkdir()
    old = SCHEMA.replace(
        "    restarts INTEGER NOT NULL DEFAULT 0, -- times re-queued after Studio stopped mid-job\n",
        "",
    )
    assert "restarts" not in old
    with sqlite3.connect(tmp_path / "s" / "studio.sqlite3") as db:
        db.executescript(old)
    store = Store(tmp_path / "s")
    job_id = store.create_job(store.create_model("m", ["a", "b"]), "quick", None)
    assert store.get_job(job_id)["restarts"] == 0


def test_security_non_loopback_needs_keys(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="--api-keys"):
        create_app(StudioConfig(data_dir=tmp_path / "s", host="0.0.0.0", start_worker=False))
    keys = tmp_path / "keys.txt"
    keys.write_text("short\n")
    with pytest.raises(StudioError, match="16 characters"):
        read_api_keys(keys)
    key = "k" * 24
    keys.write_text(f"# studio keys\n{key}\n")
    config = StudioConfig(
        data_dir=tmp_path / "s", host="0.0.0.0", api_keys=read_api_keys(keys), start_worker=False
    )
    with TestClient(create_app(config)) as client:
        assert client.get("/api/models").status_code == 401
        assert (
            client.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert (
            client.get("/api/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        )
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert (
            client.post("/login", data={"key": "wrong"}, follow_redirects=False)
            .headers["location"]
            .startswith("/login?error")
        )
        client.post("/login", data={"key": key}, follow_redirects=False)
        assert client.get("/").status_code == 200  # the session cookie opens UI and API
        assert client.get("/api/models").status_code == 200


def test_pages_render_and_escape_names(client: TestClient) -> None:
    r = client.post("/api/models", json={"name": "<script>alert(1)</script>", "categories": ["a"]})
    mid = r.json()["id"]
    home = client.get("/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in home and "<script>alert(1)" not in home
    page = client.get(f"/models/{mid}").text
    assert "<script>alert(1)" not in page and 'id="train"' in page
    assert client.get("/static/studio.js").status_code == 200


def test_cli_refuses_an_open_non_loopback_bind(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lensflow.cli import app

    r = CliRunner().invoke(app, ["studio", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "--api-keys" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["studio", "--api-keys", str(tmp_path / "none.txt")])
    assert r.exit_code == 2 and "cannot read --api-keys" in r.output


def test_chunked_uploads_without_length_are_refused(client: TestClient) -> None:
    mid = create(client, ["a"])["id"]

    def body():
        yield b"\xff\xd8\xff"

    r = client.post(
        f"/api/models/{mid}/images?category=a",
        content=body(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert r.status_code == 411 and "Content-Length" in r.json()["detail"]


def test_api_docs_work_offline(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and not [a for a in assets if a.startswith(("http://", "https://", "//"))]
    for asset in assets:
        if asset.endswith((".js", ".css")):
            assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "lensflow Studio"


def test_studio_exposed_to_a_network_refuses_urls_into_it(
    tmp_path: Path, serve, sample_folder: Path
) -> None:
    """With --host beyond loopback, a key holder must not reach this machine's own network."""
    hats = photo_bytes(sample_folder, "hat", 1)
    server = serve({"/a.jpg": ("file", hats[0][1], "image/jpeg")})
    key = "k" * 24
    config = StudioConfig(
        data_dir=tmp_path / "s", host="0.0.0.0", api_keys=(key,), start_worker=False
    )
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(config)) as client:
        mid = client.post("/api/models", json={"name": "m", "categories": ["hat", "cap"]},
                          headers=auth).json()["id"]  # fmt: skip
        res = client.post(f"/api/models/{mid}/images", headers=auth,
                          json={"urls": [server.url("/a.jpg")], "category": "hat"}).json()  # fmt: skip
    assert res["accepted"] == []
    assert "refused: 127.0.0.1" in res["rejected"][0]["reason"]
    assert server.hits["/a.jpg"] == 0
