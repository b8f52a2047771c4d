"""Small text files next to a search, in a local folder or behind a URI
(s3://, gs://, ...), through pyarrow's filesystems as Ray itself uses them."""
from __future__ import annotations

from pathlib import Path


def _fs(uri: str):
    import pyarrow.fs as pafs

    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    return pafs.FileSystem.from_uri(uri)


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(uri: str) -> str:
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as fh:
        return fh.read().decode()


def write_text(uri: str, text: str) -> None:
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode())


def upload_dir(local: Path, uri: str) -> None:
    """Copy the local artefacts of a search next to its remote experiment."""
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
