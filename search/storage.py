"""Small text files next to a search, in a local folder or behind a URI
(s3://, gs://, ...), through pyarrow's filesystems as Ray itself uses them."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) of a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    return pafs.FileSystem.from_uri(uri)



def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(uri: str) -> str:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as fh:
        return fh.read().decode()


def write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode())


def write_text_atomic(fs: Any, path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of one: on a local
    disk a temporary file is renamed over the target; an object store's single
    upload is atomic already."""
    import pyarrow.fs as pafs

    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    target = path
    if isinstance(fs, pafs.LocalFileSystem):
        path = f"{target}.tmp-{secrets.token_hex(4)}"
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode())
    if path != target:
        fs.move(path, target)


def probe_local_folder(folder: str) -> str | None:
    """Why a search could not write into the local ``folder``, or None.

    Creates the folder (and missing parents) and a probe file in it, then
    removes everything it created, so a dry run leaves no trace."""
    target = Path(folder)
    created: list[Path] = []
    try:
        existing = next(p for p in (target, *target.parents) if p.exists())
        if not existing.is_dir():
            return f"{existing} is a file, not a folder"
        for missing in reversed([p for p in (target, *target.parents) if not p.exists()]):
            missing.mkdir()
            created.append(missing)
        probe = target / f".write_probe_{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        return f"{err.strerror or err} ({err.filename})" if err.filename else str(err)
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                pass
    return None


def upload_dir(local: Path, uri: str) -> None:
    """Copy the local artefacts of a search next to its remote experiment."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
