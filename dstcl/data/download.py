"""Downloading one file safely: streamed, checksummed, and never left half-written.

The file is streamed into a temporary file beside the destination while its MD5 is computed; only a
complete file with the expected checksum is renamed (atomically) to its final name, so an interrupted
or corrupted download can never be mistaken for a good copy later.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..files import current_umask
from ..errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` and check its MD5; returns ``dest``.

    An existing ``dest`` with the right checksum is kept as it is. Network failures and checksum
    mismatches raise :class:`DataError` saying how to place the file by hand.
    """
    dest = Path(dest)
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    manual = (f"Download it by another means (a browser, curl) from {url} and place it at {dest}, "
              "or point --data-dir (or $DSTCL_DATA) at a folder that holds it.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.fchmod(fd, 0o666 & ~current_umask())  # the mode open() would give, not mkstemp's 0600
    except OSError as exc:
        raise DataError(f"cannot write the download to {dest.parent}: {exc.strerror or exc}. "
                        "Choose a writable folder with --data-dir.") from None
    try:
        digest = _fetch(url, fd, progress, dest.name, manual)
        if digest != md5:
            raise DataError(f"the file downloaded from {url} has MD5 {digest}, expected {md5}: it is corrupt "
                            f"or not the expected file, so it was deleted. Try again later. {manual}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _fetch(url: str, fd: int, progress: bool, label: str, manual: str) -> str:
    """Stream ``url`` into the open file ``fd`` (closed on return); returns the hex MD5 of the body."""
    from tqdm.auto import tqdm

    digest = hashlib.md5()
    with os.fdopen(fd, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                          disable=not progress, file=sys.stderr, leave=False) as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise DataError(f"downloading {url} failed: the server answered {exc.code} {exc.reason}. "
                            f"{manual}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"downloading {url} failed ({reason}); check the network connection or "
                            f"proxy. {manual}") from None
        except OSError as exc:
            raise DataError(f"downloading {url} failed while writing the file ({exc.strerror or exc}). "
                            f"{manual}") from None
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
