"""Write a build context as a tar archive, streaming file contents straight from git."""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO

from gateway.models import ContextFile

# Small contexts stay in memory; large ones spill to a temporary file instead of RAM.
SPOOL_IN_MEMORY = 16 * 1024 * 1024

# Returns a readable stream of one git blob's bytes, read to the end by the caller.
BlobReader = Callable[[str], IO[bytes]]


def write_context_tar(
    context: tuple[ContextFile, ...], read_blob: BlobReader, mtime: int
) -> IO[bytes]:
    """Deterministic headers (owner root, fixed modes, one mtime) so equal inputs give equal
    layers. The caller closes the returned file."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (returned)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in _directories(context):
                tar.addfile(_info(directory, 0, 0o755, mtime, tarfile.DIRTYPE))
            for entry in context:
                if entry.arcname.endswith("/"):
                    continue  # an empty directory: written with the others
                mode = 0o755 if entry.executable else 0o644
                info = _info(entry.arcname, entry.size, mode, mtime, tarfile.REGTYPE)
                if entry.data is not None:
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    assert entry.blob is not None
                    tar.addfile(info, read_blob(entry.blob))
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


def _directories(context: tuple[ContextFile, ...]) -> list[str]:
    """Every folder the entries are in; an entry whose name ends in "/" is a folder."""
    found: set[str] = set()
    for entry in context:
        parent = posixpath.dirname(entry.arcname)
        while parent and parent not in found:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(found)


def _info(name: str, size: int, mode: int, mtime: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.type = kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
