"""Storage paths (local folders or ``s3://``-style URIs) and JSON-lines files, in one place.

Run storage may be a local folder or a URI that pyarrow's filesystems understand (``s3://``, ``gs://``...);
every module asks :func:`is_remote` rather than testing for ``"://"`` itself. JSON lines are read by
:func:`read_jsonl`, whose errors name the file and the 1-based line number.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def is_remote(path: str | Path) -> bool:
    """True for a URI with a scheme (``s3://bucket/runs``), False for a local path."""
    return "://" in str(path)


def resolve_storage(path: str | Path) -> str:
    """A storage root as Ray wants it: an absolute local path, or the URI unchanged (without a trailing ``/``)."""
    return str(path).rstrip("/") if is_remote(path) else str(Path(path).expanduser().resolve())


def fs_uri(filesystem: Any, path: str) -> str:
    """A path inside a pyarrow filesystem (as Ray reports trial and checkpoint paths: ``bucket/runs/...``) as a
    URI that ``pyarrow.fs.FileSystem.from_uri`` and Ray's ``Checkpoint`` open again; a local path stays a path."""
    name = filesystem.type_name
    return path if name == "local" or "://" in path else f"{name}://{path.lstrip('/')}"


def write_text(uri_or_path: str | Path, text: str) -> None:
    """Write a small text file locally (parents created) or to remote storage."""
    if is_remote(uri_or_path):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(str(uri_or_path))
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # object stores: no-op; file:// and HDFS need it
        with fs.open_output_stream(path) as f:
            f.write(text.encode())
    else:
        Path(uri_or_path).parent.mkdir(parents=True, exist_ok=True)
        Path(uri_or_path).write_text(text)


def upload_dir(folder: str | Path, uri: str) -> str:
    """Copy the local ``folder`` (recursively) to the remote ``uri``; returns ``uri``."""
    import pyarrow.fs

    pyarrow.fs.copy_files(str(Path(folder).resolve()), uri, source_filesystem=pyarrow.fs.LocalFileSystem())
    return uri


def iter_jsonl(
    text: str,
    source: str | Path,
    *,
    torn_tail_ok: bool = False,
    on_error: Callable[[int, json.JSONDecodeError], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(line number from 1, value)`` for every non-blank line of ``text``.

    A broken line is a ValueError naming ``source`` and the line; with ``torn_tail_ok`` a broken *last* line
    (a writer killed mid-line) is skipped with a warning instead; with ``on_error`` every other broken line is
    passed to ``on_error(line number, error)`` and skipped.
    """
    lines = text.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail_ok and lineno == len(lines):
                warnings.warn(f"{source}: line {lineno} is incomplete (interrupted write?); skipped", stacklevel=3)
                return
            if on_error is not None:
                on_error(lineno, e)
                continue
            raise ValueError(f"{source}: line {lineno} is not valid JSON: {e.msg} (column {e.colno})") from None
        yield lineno, value


def read_jsonl(
    path: str | Path, *, missing_ok: bool = False, torn_tail_ok: bool = False, objects: bool = False
) -> list[Any]:
    """Every value of a JSON-lines file (``.gz`` is decompressed).

    ``missing_ok``: a missing file reads as ``[]`` (else FileNotFoundError); ``torn_tail_ok``: see
    :func:`iter_jsonl`; ``objects``: a line that is not a JSON object is an error naming its line.
    """
    p = Path(path)
    if missing_ok and not p.exists():
        return []
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        text = f.read()
    values = []
    for lineno, value in iter_jsonl(text, p, torn_tail_ok=torn_tail_ok):
        if objects and not isinstance(value, dict):
            raise ValueError(f"{p}: line {lineno} is not a JSON object")
        values.append(value)
    return values


def remote_listing(uri: str) -> dict[str, list[int]]:
    """``{relative path: [size in bytes, modification time in ns]}`` of every file under the folder ``uri``.

    A missing folder (or a URI naming a file) is a FileNotFoundError naming ``uri``.
    """
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    if fs.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(f"{uri} does not exist (or is not a folder)")
    listing = {}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True)):
        if info.type == pyarrow.fs.FileType.File:
            mtime = info.mtime_ns if info.mtime_ns is not None else 0  # some object stores give none
            listing[info.path[len(root):].lstrip("/")] = [info.size, mtime]
    return dict(sorted(listing.items()))


def local_copy(uri: str) -> Path:
    """A local copy of the remote folder or file ``uri`` (any pyarrow filesystem URI), downloaded once per node.

    The copy lives in ``<asset cache>/remote/<name>-<hash of uri and its listing>`` (a file: inside that folder)
    so that a folder rewritten in place is fetched again. It is downloaded into a temporary folder and renamed
    into place under a file lock, so concurrent callers on one node (Train workers, Ray tasks) see one complete
    copy or wait for it. A missing ``uri`` is a FileNotFoundError naming it.
    """
    import hashlib

    import pyarrow.fs

    uri = uri.rstrip("/")
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    info = fs.get_file_info(root)
    is_file = info.type == pyarrow.fs.FileType.File
    listing = [info.size, info.mtime_ns] if is_file else remote_listing(uri)
    digest = hashlib.sha1(json.dumps([uri, listing]).encode()).hexdigest()[:16]
    name = uri.rsplit("/", 1)[-1]

    def download(tmp: Path) -> None:
        target = tmp / name if is_file else tmp
        pyarrow.fs.copy_files(uri, str(target), destination_filesystem=pyarrow.fs.LocalFileSystem())

    folder = atomic_dir(cache_dir() / "remote" / f"{name}-{digest}", download)
    return folder / name if is_file else folder


# ------------------------------------------------------------------------------------- the local cache
def cache_dir() -> Path:
    """The local cache root (offline assets, downloads of storage URIs): ``$SPARSEPO_CACHE``, else
    ``~/.cache/sparsepo`` (read on every call)."""
    env = os.environ.get("SPARSEPO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparsepo"


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Return ``final``, first building it with ``build(tmp_dir)`` and renaming tmp_dir into place if absent.

    The lock makes concurrent preparers (pytest workers, Ray actors) build once; the rename makes the
    folder appear complete or not at all.
    """
    from filelock import FileLock

    if final.is_dir():
        return final
    locks = cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{final.name}.lock")):
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            build(tmp)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def cache_key(**spec: Any) -> str:
    """16 hex digits naming ``spec`` (any JSON-able values; others by their text)."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
