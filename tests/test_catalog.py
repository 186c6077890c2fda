"""The dataset catalog and verified downloads, against a real HTTP server on 127.0.0.1.

Every download goes to a local server this file starts; a guard refuses any
other host, so the tests never touch the internet. After every failure the
cache must hold no partial file, temporary folder or dataset folder.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke
from PIL import Image

from ganzoo.data import catalog as catalog_mod
from ganzoo.data import download as download_mod
from ganzoo.data.catalog import (
    HEADER,
    catalog,
    catalog_rows,
    dataset_dir,
    ensure_dataset,
    ganzoo_home,
    get_entry,
    human_size,
    is_cached,
)
from ganzoo.data.download import download, extract_zip
from ganzoo.errors import UserError

SPLITS = ("trainA", "trainB", "testA", "testB")


# --- fixtures: a local server, zips like the official ones, a cache in tmp_path ---


def make_zip(top: str | None = "horse2zebra", extra: dict[str, bytes] | None = None,
             splits=SPLITS, per_split: int = 3) -> bytes:
    """A horse2zebra-like zip: ``top/<split>/<i>.png`` small PNGs (no top folder when top is None)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for split in splits:
            for i in range(per_split):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(png, format="PNG")
                zf.writestr(f"{top + '/' if top else ''}{split}/{i}.png", png.getvalue())
        for name, content in (extra or {}).items():
            zf.writestr(name, content)
    return buffer.getvalue()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hangs up early (the tests' size checks do) is expected


class Server:
    """Serves ``files[path]``; ``cut`` paths stop after half the bytes, ``hang`` paths never answer."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.no_length: set[str] = set()
        self.hang: set[str] = set()
        self.requests: Counter[str] = Counter()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests[self.path] += 1
                if self.path in owner.hang:
                    owner.release.wait(10)
                    return
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if self.path not in owner.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in owner.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
                self.close_connection = self.path in owner.no_length

            def log_message(self, *args):
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any connection to a host other than 127.0.0.1 fails the test."""
    real = socket.create_connection

    def local_only(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("GANZOO_HOME", str(path))
    monkeypatch.delenv("GANZOO_CATALOG", raising=False)
    return path


def write_catalog(tmp_path: Path, monkeypatch, *lines: str) -> Path:
    path = tmp_path / "extra.tsv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    monkeypatch.setenv("GANZOO_CATALOG", str(path))
    return path


def serve(server, tmp_path, monkeypatch, body: bytes, *, name="horse2zebra", path="/h2z.zip",
          size: int | str | None = None, sha: str | None = None) -> str:
    """Put ``body`` on the server and point catalog entry ``name`` at it; by default with its true size and sha256."""
    server.files[path] = body
    size = len(body) if size is None else size
    sha = hashlib.sha256(body).hexdigest() if sha is None else sha
    write_catalog(tmp_path, monkeypatch, f"{name}\t{server.url(path)}\t{size}\t{sha}\tunpaired")
    return server.url(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_clean(home: Path, name: str = "horse2zebra"):
    """No file and no hidden (temporary) entry anywhere in the cache, and no dataset folder."""
    leftovers = [p for p in home.rglob("*") if p.is_file() or p.name.startswith(".")] if home.exists() else []
    assert leftovers == []
    assert not dataset_dir(name).exists()


def failure(name: str = "horse2zebra") -> str:
    with pytest.raises(UserError) as info:
        ensure_dataset(name, progress=False)
    return str(info.value)


def manual_path(home: Path, name: str = "horse2zebra") -> str:
    return str(home / "datasets" / name / "trainA")


# --- the built-in catalog and $GANZOO_CATALOG -------------------------------


def test_builtin_catalog_has_the_official_cyclegan_datasets(home):
    entries = catalog()
    assert sorted(entries) == [
        "ae_photos", "apple2orange", "cezanne2photo", "cityscapes", "facades", "horse2zebra",
        "iphone2dslr_flower", "maps", "monet2photo", "summer2winter_yosemite", "ukiyoe2photo", "vangogh2photo",
    ]
    h2z = entries["horse2zebra"]
    assert h2z.bytes == 116867962 and h2z.kind == "unpaired"
    assert h2z.sha256 == "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1"
    assert h2z.url == "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    assert entries["maps"].bytes == 1476754427
    ae = entries["ae_photos"]
    assert ae.bytes is None and ae.sha256 is None and ae.url.endswith("/ae_photos.zip")
    assert all(e.kind == "unpaired" and e.url.startswith("https://") for e in entries.values())


def test_builtin_catalog_file_is_sorted_by_name():
    from importlib import resources

    lines = resources.files("ganzoo.data").joinpath("catalog.tsv").read_text().splitlines()
    assert lines[0] == HEADER
    names = [line.split("\t")[0] for line in lines[1:]]
    assert names == sorted(names) and len(names) == 12


def test_extra_catalog_adds_and_replaces_entries(home, tmp_path, monkeypatch):
    write_catalog(tmp_path, monkeypatch,
                  "# a mirror and a private set",
                  f"horse2zebra\thttp://127.0.0.1:1/h2z.zip\t10\t{'A' * 64}\tunpaired",
                  "",
                  "mine\thttps://example.invalid/mine.zip\t-\t-\tunpaired")
    entries = catalog()
    assert len(entries) == 13
    assert entries["horse2zebra"].url == "http://127.0.0.1:1/h2z.zip" and entries["horse2zebra"].bytes == 10
    assert entries["horse2zebra"].sha256 == "a" * 64  # normalised to lower case
    assert entries["mine"].bytes is None and entries["apple2orange"].bytes == 78456409


@pytest.mark.parametrize("bad, words", [
    ("horse2zebra\thttp://x/h.zip\t12\tunpaired", "expected 5 tab-separated fields"),
    ("horse2zebra\thttp://x/h.zip\ttwelve\t-\tunpaired", "bad bytes 'twelve'"),
    ("horse2zebra\thttp://x/h.zip\t12\tabc\tunpaired", "bad sha256 'abc'"),
    ("horse2zebra\tftp://x/h.zip\t12\t-\tunpaired", "bad url 'ftp://x/h.zip'"),
    ("../evil\thttp://x/h.zip\t12\t-\tunpaired", "bad name '../evil'"),
    ("horse2zebra\thttp://x/h.zip\t12\t-\tpaired", "bad kind 'paired'"),
])
def test_malformed_extra_catalog_line_names_file_and_line(home, tmp_path, monkeypatch, bad, words):
    path = write_catalog(tmp_path, monkeypatch, "ok\thttp://x/ok.zip\t-\t-\tunpaired", bad)
    with pytest.raises(UserError) as info:
        catalog()
    assert f"{path}, line 3" in str(info.value) and words in str(info.value)


def test_extra_catalog_needs_its_header_and_must_exist(home, tmp_path, monkeypatch):
    path = tmp_path / "noheader.tsv"
    path.write_text("mine\thttp://x/m.zip\t-\t-\tunpaired\n")
    monkeypatch.setenv("GANZOO_CATALOG", str(path))
    with pytest.raises(UserError, match="line 1: expected the header line"):
        catalog()
    monkeypatch.setenv("GANZOO_CATALOG", str(tmp_path / "missing.tsv"))
    with pytest.raises(UserError, match="missing.tsv"):
        catalog()


def test_unknown_name_suggests_and_lists(home):
    with pytest.raises(UserError) as info:
        get_entry("hors2zebra")
    message = str(info.value)
    assert "unknown dataset 'hors2zebra'" in message and "did you mean horse2zebra?" in message
    assert "apple2orange" in message and "vangogh2photo" in message


def test_ganzoo_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GANZOO_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert ganzoo_home() == tmp_path / "user" / ".cache" / "ganzoo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ganzoo_home() == tmp_path / "xdg" / "ganzoo"
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "gz"))
    assert ganzoo_home() == tmp_path / "gz"
    assert dataset_dir("facades") == tmp_path / "gz" / "datasets" / "facades"


def test_human_size():
    assert [human_size(n) for n in (None, 512, 35135868, 116867962, 1476754427)] == [
        "?", "512 B", "35 MB", "117 MB", "1.5 GB"]


# --- downloads ---------------------------------------------------------------


def test_good_download_is_extracted_cached_and_not_fetched_again(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip())
    entry = get_entry("horse2zebra")
    assert not is_cached(entry)
    path = ensure_dataset("horse2zebra", progress=False)
    assert path == home / "datasets" / "horse2zebra"
    assert sorted(p.name for p in path.iterdir()) == sorted(SPLITS)
    assert sorted(p.name for p in (path / "trainA").iterdir()) == ["0.png", "1.png", "2.png"]
    Image.open(path / "testB" / "2.png").verify()
    assert is_cached(entry) and server.requests["/h2z.zip"] == 1
    # The zip is not kept and no temporary entry is left beside the dataset.
    assert sorted(p.name for p in home.iterdir()) == ["datasets"]
    assert [p.name for p in (home / "datasets").iterdir()] == ["horse2zebra"]
    assert ensure_dataset("horse2zebra", progress=False) == path
    assert server.requests["/h2z.zip"] == 1


def test_zip_with_splits_at_the_top_level_is_accepted(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip(top=None, extra={"README.txt": b"hi"}))
    path = ensure_dataset("horse2zebra", progress=False)
    assert (path / "trainA" / "0.png").is_file() and (path / "README.txt").is_file()


def test_sha256_mismatch(home, server, tmp_path, monkeypatch):
    body = make_zip()
    url = serve(server, tmp_path, monkeypatch, body, sha="0" * 64)
    message = failure()
    assert f"sha256 mismatch: expected {'0' * 64}, got {hashlib.sha256(body).hexdigest()}" in message
    assert url in message and manual_path(home) in message and "--data" in message
    assert "\n" not in message
    assert_clean(home)


def test_wrong_size_announced_by_the_server(home, server, tmp_path, monkeypatch):
    body = make_zip()
    serve(server, tmp_path, monkeypatch, body, size=len(body) + 1)
    message = failure()
    assert f"size mismatch: expected {len(body) + 1} bytes" in message and manual_path(home) in message
    assert_clean(home)


@pytest.mark.parametrize("delta", [1, -1])
def test_wrong_size_without_content_length(home, server, tmp_path, monkeypatch, delta):
    body = make_zip()
    serve(server, tmp_path, monkeypatch, body, size=len(body) + delta)
    server.no_length.add("/h2z.zip")
    message = failure()
    assert "size mismatch" in message and manual_path(home) in message
    assert_clean(home)


def test_connection_cut_halfway(home, server, tmp_path, monkeypatch):
    body = make_zip()
    serve(server, tmp_path, monkeypatch, body)
    server.cut.add("/h2z.zip")
    message = failure()
    assert f"connection closed after {len(body) // 2} of {len(body)} bytes" in message
    assert manual_path(home) in message
    assert_clean(home)


def test_http_404(home, server, tmp_path, monkeypatch):
    write_catalog(tmp_path, monkeypatch, f"horse2zebra\t{server.url('/nothing.zip')}\t10\t-\tunpaired")
    message = failure()
    assert "HTTP 404" in message and server.url("/nothing.zip") in message and manual_path(home) in message
    assert_clean(home)


def test_connection_refused_says_offline(home, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/h2z.zip"
    write_catalog(tmp_path, monkeypatch, f"horse2zebra\t{url}\t10\t-\tunpaired")
    message = failure()
    assert "connection refused" in message and "offline" in message and url in message
    assert f"Download {url} yourself and extract it so that {manual_path(home)} exists" in message
    assert "(and trainB, testA, testB), or pass the extracted folder's path to --data." in message
    assert_clean(home)


def test_timeout(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip())
    server.hang.add("/h2z.zip")
    monkeypatch.setattr(catalog_mod, "TIMEOUT", 0.3)
    message = failure()
    assert "timed out" in message and manual_path(home) in message
    assert_clean(home)


def test_ctrl_c_mid_download_leaves_no_part_file(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip())

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(download_mod, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset("horse2zebra", progress=False)
    assert_clean(home)


def test_download_alone_writes_dest_only_when_verified(server, tmp_path):
    body = make_zip()
    server.files["/a.zip"] = body
    dest = tmp_path / "a.zip"
    got = download(server.url("/a.zip"), dest, expected_bytes=len(body),
                   sha256=hashlib.sha256(body).hexdigest(), progress=False)
    assert dest.read_bytes() == body and got.bytes == len(body)
    with pytest.raises(UserError, match="sha256 mismatch"):
        download(server.url("/a.zip"), tmp_path / "b.zip", expected_bytes=None, sha256="1" * 64, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_unverified_entry_downloads_with_a_warning(home, server, tmp_path, monkeypatch, capsys):
    body = make_zip(top="ae_photos", splits=("trainA", "trainB"))
    serve(server, tmp_path, monkeypatch, body, name="ae_photos", size="-", sha="-")
    path = ensure_dataset("ae_photos", progress=False)
    assert is_cached(get_entry("ae_photos")) and path == home / "datasets" / "ae_photos"
    err = capsys.readouterr().err
    assert "could not be verified" in err and hashlib.sha256(body).hexdigest() in err and str(len(body)) in err


# --- unsafe and unusable archives ---------------------------------------------


def test_zip_slip_member_is_refused(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip(extra={"../evil.txt": b"pwned", "horse2zebra/../../evil2.txt": b"x"}))
    message = failure()
    assert "unsafe" in message and "../evil.txt" in message and manual_path(home) in message
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    assert_clean(home)


@pytest.mark.parametrize("member", ["/abs/evil.txt", "C:/evil.txt"])
def test_absolute_member_is_refused(tmp_path, member):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip(extra={member: b"x"}))
    with pytest.raises(UserError, match="unsafe"):
        extract_zip(archive, tmp_path / "datasets" / "h", "h")
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == []


def test_symlink_member_is_refused(tmp_path):
    buffer = io.BytesIO(make_zip())
    with zipfile.ZipFile(buffer, "a") as zf:
        info = zipfile.ZipInfo("horse2zebra/trainA/link.png")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    archive = tmp_path / "a.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="symbolic link"):
        extract_zip(archive, tmp_path / "datasets" / "h", "h")
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == []


def test_not_a_zip_and_a_zip_without_the_layout(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, b"<html>not a zip</html>")
    assert "not a valid zip archive" in failure()
    assert_clean(home)
    serve(server, tmp_path, monkeypatch, make_zip(splits=("testA", "testB")))
    assert "does not hold a dataset: no trainA, trainB folders" in failure()
    assert_clean(home)


# --- the cache folder ---------------------------------------------------------


def hand_placed(home: Path, name: str = "horse2zebra") -> Path:
    folder = home / "datasets" / name
    for split in ("trainA", "trainB"):
        (folder / split).mkdir(parents=True)
        (folder / split / "x.png").write_bytes(b"png")
    return folder


def test_hand_placed_folder_counts_as_cached(home, tmp_path, monkeypatch):
    write_catalog(tmp_path, monkeypatch, f"horse2zebra\thttp://127.0.0.1:{closed_port()}/h.zip\t10\t-\tunpaired")
    folder = hand_placed(home)
    assert is_cached(get_entry("horse2zebra"))
    assert ensure_dataset("horse2zebra", progress=False) == folder  # no network: the port is closed


def test_empty_split_folder_is_not_cached(home):
    folder = hand_placed(home)
    (folder / "trainB" / "x.png").unlink()
    assert not is_cached(get_entry("horse2zebra"))
    with pytest.raises(UserError, match="not a complete unpaired dataset.*--force"):
        ensure_dataset("horse2zebra", progress=False)
    assert (folder / "trainA" / "x.png").exists()  # the user's files are left alone


def test_force_replaces_and_a_failed_force_keeps_the_old_copy(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip())
    folder = hand_placed(home)
    assert ensure_dataset("horse2zebra", progress=False, force=True) == folder
    assert not (folder / "trainA" / "x.png").exists() and (folder / "trainA" / "0.png").exists()
    server.cut.add("/h2z.zip")
    with pytest.raises(UserError, match="connection closed"):
        ensure_dataset("horse2zebra", progress=False, force=True)
    assert (folder / "trainA" / "0.png").exists()
    assert [p.name for p in (home / "datasets").iterdir()] == ["horse2zebra"] and not (home / "downloads").exists()


# --- the `ganzoo data` commands -----------------------------------------------


def run(*args: str):
    """`ganzoo data ...` through the real command group (UserError becomes "Error: ..." and exit 1)."""
    return invoke("data", *args)


def test_data_list_shows_sizes_and_what_is_cached(home):
    hand_placed(home, "facades")
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert str(home / "datasets") in lines[0]
    assert lines[1].split() == ["NAME", "SIZE", "CACHED"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert len(rows) == 12
    assert rows["facades"] == ["35", "MB", "yes"] and rows["horse2zebra"] == ["117", "MB", "no"]
    assert rows["ae_photos"] == ["?", "no"]
    assert [r.cached for r in catalog_rows() if r.name == "facades"] == ["yes"]


def test_data_download_through_the_cli(home, server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, make_zip())
    result = run("download", "horse2zebra")
    assert result.exit_code == 0, result.output
    assert f"horse2zebra is ready in {home / 'datasets' / 'horse2zebra'}" in result.output
    result = run("download", "horse2zebra")
    assert "already cached" in result.output and server.requests["/h2z.zip"] == 1
    result = run("download", "horse2zebra", "--force")
    assert "is ready in" in result.output and server.requests["/h2z.zip"] == 2


def test_data_download_errors_are_one_line(home, tmp_path, monkeypatch):
    result = run("download", "hors2zebra")
    assert result.exit_code == 1 and "did you mean horse2zebra?" in result.output
    write_catalog(tmp_path, monkeypatch, f"horse2zebra\thttp://127.0.0.1:{closed_port()}/h.zip\t10\t-\tunpaired")
    result = run("download", "horse2zebra")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and errors[0].startswith("Error: download of http://127.0.0.1:")
    assert "offline" in errors[0] and "Traceback" not in result.output
    assert_clean(home)


def test_catalog_modules_do_not_import_torch():
    code = ("import sys; import ganzoo.cli.data, ganzoo.data.catalog; ganzoo.data.catalog.catalog(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
