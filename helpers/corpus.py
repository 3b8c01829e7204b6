"""The corpus: download once, check its sha256, cache it atomically, read it as paragraphs."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from helpers.config import ROOT

URL = "https://raw.githubusercontent.com/jamescalam/transformers/main/data/text/meditations/clean.txt"
SHA256 = "f33824424b88c778d0c05502b7db6bd6a5e0cc30fe9f2c48632713c2226d96aa"
ENV_VAR = "MEDITATIONS_CORPUS"


class CorpusError(RuntimeError):
    """The corpus is missing, unreadable or unusable; the message says what to do."""


def data_dir() -> Path:
    """``data/`` of the checkout, or a user cache when helpers is installed without one."""
    if (ROOT / "pyproject.toml").exists():
        return ROOT / "data"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bert-meditations"


def default_path() -> Path:
    return data_dir() / "meditations.txt"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(path: Path, url: str = URL, sha256: str = SHA256, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``path`` if its bytes match ``sha256``; leave nothing behind otherwise."""
    hint = f"Put a copy at {path} or pass --corpus PATH (or set ${ENV_VAR})."
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            body = response.read()
    except urllib.error.HTTPError as err:
        raise CorpusError(f"Could not download the corpus from {url}: HTTP {err.code}. {hint}") from None
    except http.client.IncompleteRead as err:
        # The server promised more bytes (Content-Length) than it sent before closing.
        got, missing = len(err.partial), err.expected or 0
        raise CorpusError(
            f"The download from {url} was cut short ({got} of {got + missing} bytes); run again to retry."
        ) from None
    except http.client.HTTPException as err:
        raise CorpusError(
            f"Could not download the corpus from {url} ({type(err).__name__}); run again to retry. {hint}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CorpusError(f"Could not download the corpus from {url} ({reason}); are you offline? {hint}") from None
    if expected is not None and len(body) != int(expected):
        raise CorpusError(
            f"The download from {url} was cut short ({len(body)} of {expected} bytes); run again to retry."
        )
    got = hashlib.sha256(body).hexdigest()
    if got != sha256:
        raise CorpusError(
            f"The file downloaded from {url} has sha256 {got[:12]}…, not the expected {sha256[:12]}…; "
            f"nothing was saved. {hint}"
        )
    atomic_write_bytes(path, body)
    return path


def ensure_corpus(path: str | os.PathLike | None = None, url: str = URL) -> Path:
    """Return a usable corpus path: an explicit file, ``$MEDITATIONS_CORPUS``, or the checked, cached default."""
    chosen = path or os.environ.get(ENV_VAR)
    if chosen:
        chosen = Path(chosen).expanduser()
        if chosen.is_dir():
            raise CorpusError(
                f"{chosen} is a folder, not a text file; pass the corpus file itself to --corpus or ${ENV_VAR}."
            )
        if not chosen.is_file():
            raise CorpusError(
                f"The corpus file {chosen} does not exist; check the path given by --corpus or ${ENV_VAR}."
            )
        return chosen
    target = default_path()
    if not target.exists():
        return download(target, url)
    got = sha256_of(target)
    if got != SHA256:
        raise CorpusError(
            f"{target} is not the expected Meditations text (sha256 {got[:12]}…); "
            f"delete it to download a fresh copy, or pass your own file with --corpus."
        )
    return target


def read_paragraphs(path: str | os.PathLike) -> list[str]:
    """One paragraph per non-blank line of a UTF-8 text file, stripped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"The corpus file {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a folder, not a text file; pass the corpus file itself.") from None
    if b"\x00" in raw:
        raise CorpusError(
            f"{path} looks like a binary file (it holds NUL bytes); pass a UTF-8 text file, one paragraph per line."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path} is not UTF-8 text (bad byte at offset {err.start}); re-save it as UTF-8.") from None
    paragraphs = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        raise CorpusError(f"{path} holds no text; pass a file with one paragraph per line.")
    return paragraphs


def load_paragraphs(path: str | os.PathLike | None = None, max_paragraphs: int | None = None) -> list[str]:
    """Ensure the corpus is here, then read it; e.g. ``load_paragraphs()[:2]``."""
    paragraphs = read_paragraphs(ensure_corpus(path))
    return paragraphs[:max_paragraphs] if max_paragraphs else paragraphs
