"""The corpus: download against a real local HTTP server, the cache, and bad input files."""

import hashlib
import http.server
import socket
import threading
from collections import Counter

import pytest

import helpers.corpus as corpus
from helpers.corpus import SHA256, CorpusError, download, ensure_corpus, load_paragraphs, read_paragraphs, sha256_of


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good (the real bytes), /wrong (other bytes), /truncated (cut short), anything else 404."""

    body: bytes = b""
    hits: Counter = Counter()

    def do_GET(self):  # http.server's name
        self.hits[self.path] += 1
        if self.path == "/good":
            self._send(self.body)
        elif self.path == "/wrong":
            self._send(self.body[:-10] + b"0123456789")  # same length, other bytes
        elif self.path == "/truncated":
            # Promise the whole file, send a third of it, then close the connection.
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body[: len(self.body) // 3])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _send(self, data: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(corpus_file):
    """A real HTTP server on 127.0.0.1 serving the corpus; yields (base_url, hit counter)."""
    handler = type("Handler", (_Handler,), {"body": corpus_file.read_bytes(), "hits": Counter()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Point the default corpus location at an empty folder under tmp_path."""
    folder = tmp_path / "data"
    monkeypatch.setattr(corpus, "data_dir", lambda: folder)
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    return folder


@pytest.fixture
def real_corpus_unchanged(corpus_file):
    """Fails the test if the real data/meditations.txt changed while it ran."""
    yield
    assert sha256_of(corpus_file) == SHA256, "a test damaged data/meditations.txt"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_real_corpus_is_utf8_one_paragraph_per_line(corpus_file, paragraphs):
    text = corpus_file.read_bytes().decode("utf-8")  # raises if not UTF-8
    assert len(paragraphs) == 507
    assert paragraphs == [line.strip() for line in text.splitlines() if line.strip()]
    assert all("\n" not in p and p == p.strip() for p in paragraphs)


def test_download_right_bytes_then_cached_without_a_request(server, data_dir, real_corpus_unchanged):
    base, hits = server
    path = ensure_corpus(url=f"{base}/good")
    assert path == data_dir / "meditations.txt"
    assert sha256_of(path) == SHA256
    assert _leftovers(data_dir) == ["meditations.txt"]  # no .part file left beside it
    assert hits["/good"] == 1
    # Second use: the checked cache, no request.
    assert ensure_corpus(url=f"{base}/good") == path
    assert len(load_paragraphs(None)) == 507
    assert hits["/good"] == 1


@pytest.mark.parametrize(
    "route, words",
    [
        ("/wrong", "sha256"),
        ("/truncated", "cut short"),
        ("/missing", "HTTP 404"),
    ],
)
def test_failed_downloads_raise_and_leave_no_file(server, data_dir, route, words, real_corpus_unchanged):
    base, hits = server
    with pytest.raises(CorpusError, match=words) as info:
        ensure_corpus(url=base + route)
    assert base + route in str(info.value)
    assert hits[route] == 1
    assert _leftovers(data_dir) == []  # neither the file nor a .part leftover
    # Nothing was cached, so the next call asks the server again.
    with pytest.raises(CorpusError):
        ensure_corpus(url=base + route)
    assert hits[route] == 2


def test_no_server_at_all_raises_and_leaves_no_file(data_dir, real_corpus_unchanged):
    url = f"http://127.0.0.1:{_closed_port()}/meditations.txt"
    with pytest.raises(CorpusError, match="offline") as info:
        ensure_corpus(url=url)
    assert "--corpus" in str(info.value)
    assert _leftovers(data_dir) == []


def test_download_with_explicit_path_and_checksum(server, tmp_path):
    base, _ = server
    target = tmp_path / "nested" / "corpus.txt"
    download(target, f"{base}/good")
    assert sha256_of(target) == SHA256
    # A different expected checksum rejects the same bytes, and keeps the existing file intact.
    with pytest.raises(CorpusError, match="sha256"):
        download(target, f"{base}/good", sha256=hashlib.sha256(b"other").hexdigest())
    assert sha256_of(target) == SHA256
    assert _leftovers(target.parent) == ["corpus.txt"]


def test_a_wrong_cached_file_is_reported_not_used(data_dir, server):
    base, hits = server
    data_dir.mkdir()
    (data_dir / "meditations.txt").write_text("Not the Meditations.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="not the expected Meditations text"):
        ensure_corpus(url=f"{base}/good")
    assert hits["/good"] == 0


def test_env_var_and_explicit_path_are_honoured(tmp_path, data_dir, monkeypatch):
    mine = tmp_path / "mine.txt"
    mine.write_text("First. Second.\nThird. Fourth.\n", encoding="utf-8")
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("Other. Text.\n", encoding="utf-8")
    assert ensure_corpus(mine) == mine
    monkeypatch.setenv(corpus.ENV_VAR, str(theirs))
    assert ensure_corpus() == theirs
    assert load_paragraphs() == ["Other. Text."]
    assert ensure_corpus(mine) == mine  # an explicit path beats the environment variable
    assert load_paragraphs(mine, max_paragraphs=1) == ["First. Second."]
    assert _leftovers(data_dir) == []  # nothing was downloaded


def _one_sentence(message: str) -> bool:
    # One sentence: ends with '.', and no '. ' followed by a capital starts a second one.
    body = message.replace("e.g.", "eg").replace("i.e.", "ie")
    return body.endswith(".") and not any(
        body[i : i + 2] == ". " and body[i + 2 : i + 3].isupper() for i in range(len(body) - 2)
    )


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.txt", b"", "holds no text"),
        ("blank.txt", b"  \n\t\n   \r\n", "holds no text"),
        ("binary.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("latin1.txt", "Marc Aurèle, Pensées.\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_files_raise_one_clear_sentence(tmp_path, name, content, words, real_corpus_unchanged):
    path = tmp_path / name
    path.write_bytes(content)
    for call in (read_paragraphs, load_paragraphs):
        with pytest.raises(CorpusError, match=words) as info:
            call(path)
        assert str(path) in str(info.value)
        assert _one_sentence(str(info.value)), str(info.value)


def test_missing_file_and_directory_raise_one_clear_sentence(tmp_path, monkeypatch, real_corpus_unchanged):
    missing = tmp_path / "nope.txt"
    with pytest.raises(CorpusError, match="does not exist") as info:
        load_paragraphs(missing)
    assert _one_sentence(str(info.value))
    with pytest.raises(CorpusError, match="does not exist"):
        read_paragraphs(missing)
    monkeypatch.setenv(corpus.ENV_VAR, str(missing))
    with pytest.raises(CorpusError, match="does not exist"):
        load_paragraphs()
    for call in (read_paragraphs, load_paragraphs):
        with pytest.raises(CorpusError, match="folder") as info:
            call(tmp_path)
        assert _one_sentence(str(info.value)), str(info.value)


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes("\ufeffFirst paragraph. Two.\r\n\r\nSecond one.\r\n".encode("utf-8"))
    assert read_paragraphs(path) == ["First paragraph. Two.", "Second one."]


def test_atomic_write_never_leaves_a_half_file(tmp_path, monkeypatch):
    target = tmp_path / "corpus.txt"
    corpus.atomic_write_bytes(target, b"old complete text\n")

    def crash(fd):  # the disk fails after the bytes were written, before the rename
        raise OSError("disk full")

    monkeypatch.setattr(corpus.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        corpus.atomic_write_bytes(target, b"new text that never lands\n")
    assert target.read_bytes() == b"old complete text\n"  # the old file is intact
    assert _leftovers(tmp_path) == ["corpus.txt"]  # and no .part file is left
    with pytest.raises(OSError):
        corpus.atomic_write_bytes(tmp_path / "fresh" / "corpus.txt", b"x")
    assert _leftovers(tmp_path / "fresh") == []
