"""Write a checkpoint directory whole or not at all: into a temporary sibling, renamed into place at the end.

A kill mid-write leaves only the hidden sibling (``.convert-PID-*``), never a half-written destination, so a rerun is
neither refused nor fooled by a partial checkpoint; the next write into the same parent removes the siblings whose
process is gone (a live one's is left alone). The result gets the permissions a plain ``mkdir`` would give
(``tempfile.mkdtemp`` makes the directory private).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

STAGING = re.compile(r"\.convert-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(parent: str) -> list[str]:
    """Remove the staging siblings in ``parent`` that a killed write left (their process no longer runs)."""
    removed = []
    for name in os.listdir(parent):
        match = STAGING.match(name)
        path = os.path.join(parent, name)
        if match and os.path.isdir(path) and not os.path.islink(path) and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain_permissions(root: str) -> None:
    """Directories 0777 and files 0666, less the umask: what ``mkdir`` and ``open`` give (some writers, such as
    safetensors, create private files)."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o666 & ~mask)


@contextlib.contextmanager
def staged_directory(directory: str, replace_existing: bool = False):
    """Yield a staging directory; on a clean exit it becomes ``directory``. An existing non-empty ``directory``
    is replaced only when ``replace_existing``; the caller decides whether that is safe."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FileExistsError(f"{directory} exists and is not a directory")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(parent)
    staging = tempfile.mkdtemp(prefix=f".convert-{os.getpid()}-", dir=parent)
    try:
        yield staging
        _plain_permissions(staging)
        if os.path.isdir(directory) and os.listdir(directory):
            if not replace_existing:
                raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite it")
            shutil.rmtree(directory)
        os.replace(staging, directory)  # an empty directory is replaced atomically
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
