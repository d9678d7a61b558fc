"""Image paths: where a row's image path resolves, and whether it stays inside its root.

Caption files often come from the web, and a row names the file the build reads. Left
alone, ``image = "../../../etc/hostname"``, a symlink to ``/etc/passwd`` or
``gs://other-bucket/...`` would copy a private file (on Dataflow: any object the worker's
service account can read) into a shared dataset. So a source's image paths are *confined*
by default (``SourceConfig.image_paths``): a path must lie inside the image root, the
source's ``image_root`` or else the folder of the data file that names it.

Refused, as ``read/unsafe_path`` and without opening anything (the detail quotes the path,
never a file's bytes):

- a relative path whose ``..`` components climb above the root;
- an absolute path or URL outside the root (one inside it is accepted as written);
- another scheme or bucket than the root's (``gs://other-bucket/x.jpg``, ``s3://...``);
- on the local filesystem, a path whose real location (symlinks resolved) lies outside
  the root's real location: an outward symlink, or a symlinked folder on the way.

The symlink check runs twice: here, when the row is read, and again where the image file
is opened (``open_confined``, from ``curation.clean.images``), which opens the resolved
file itself, so a link swapped in between is refused too. ``image_paths = "any"`` trusts
the data and turns all of this off.
"""

from __future__ import annotations

import functools
import os
import posixpath

from curation.config import SourceConfig


class UnsafePath(ValueError):
    """An image path that leaves its image root; the message quotes the path and says why."""


def is_url(path: str) -> bool:
    return "://" in path


def image_root_of(path: str, source: SourceConfig) -> str:
    """The folder ``source``'s relative image paths resolve against: ``image_root``, else
    the folder of the data file ``path``."""
    if source.image_root:
        return source.image_root
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(path)


def resolve_image_path(value: str, path: str, source: SourceConfig) -> str:
    """An image path as the image stage will open it: absolute paths and URLs as written,
    relative ones joined to the image root (``image_root_of``).

    Raises UnsafePath when the source is confined (the default) and the path leaves the
    root, and for any source when the path holds a NUL character (no filesystem opens it).
    """
    if "\x00" in value:
        raise UnsafePath(f"image path {_quote(value)} holds a NUL character")
    root = image_root_of(path, source)
    if is_url(value) or value.startswith("/"):
        resolved = value
    else:
        resolved = posixpath.join(root, value) if is_url(root) else os.path.join(root, value)
    if source.image_paths == "confined":
        _check_lexically(value, root)
        if not is_url(root):
            check_real_location(resolved, root, value)
    return resolved


def _quote(value: str, limit: int = 300) -> str:
    shown = value if len(value) <= limit else value[:limit] + f"…[{len(value) - limit} more chars]"
    return repr(shown)


def _climbs(relative: str) -> bool:
    """Whether ``relative`` (``/``-separated) goes above its starting folder through ``..``."""
    depth = 0
    for part in relative.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _url_parts(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of ``scheme://bucket/key``; the scheme lower-cased."""
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme.lower(), bucket, key


def _below(key: str, folder: str) -> str | None:
    """``key`` relative to ``folder`` (both ``/``-separated), or None when it is not below."""
    folder = folder.strip("/")
    if not folder:
        return key.lstrip("/")
    key = key.lstrip("/")
    if key == folder:
        return ""
    return key[len(folder) + 1:] if key.startswith(folder + "/") else None


def _check_lexically(value: str, root: str) -> None:
    """Refuse ``value`` when its text alone shows that it leaves ``root``."""
    where = f"the image root {_quote(root or '.')}"
    if is_url(value):
        if not is_url(root):
            scheme = value.partition("://")[0]
            hint = "; download the images first (img2dataset)" if scheme.lower() in ("http", "https") else ""
            raise UnsafePath(f"image path {_quote(value)} names another filesystem ({scheme}://); {where} is local{hint}")
        (scheme, bucket, key), (root_scheme, root_bucket, root_key) = _url_parts(value), _url_parts(root)
        if scheme != root_scheme:
            raise UnsafePath(f"image path {_quote(value)} names another scheme ({scheme}://) than {where}")
        if bucket != root_bucket:
            raise UnsafePath(f"image path {_quote(value)} names another bucket ({bucket!r}) than {where}")
        rest = _below(key, root_key)
    elif value.startswith("/"):
        if is_url(root):
            raise UnsafePath(f"image path {_quote(value)} is an absolute local path; {where} is {root.partition('://')[0]}://")
        rest = _below(os.path.abspath(value), os.path.abspath(root or "."))
    else:
        rest = value
    if rest is None:
        raise UnsafePath(f"image path {_quote(value)} is an absolute path outside {where}")
    if _climbs(rest):
        raise UnsafePath(f"image path {_quote(value)} leaves {where} through '..'")


@functools.lru_cache(maxsize=256)
def _real_root(root: str) -> str:
    return os.path.realpath(root or ".")


def check_real_location(resolved: str, root: str, written: str | None = None) -> str:
    """The real path of local file ``resolved`` (symlinks resolved); raises UnsafePath,
    quoting the path as ``written`` in the row, when it lies outside the real ``root``. A
    file that does not exist passes: opening it fails later as ``image/missing_file``."""
    real, real_root = os.path.realpath(resolved), _real_root(root)
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise UnsafePath(
            f"image path {_quote(written or resolved)} resolves (through a symlink) to {_quote(real)}, "
            f"outside the image root {_quote(root or '.')}"
        )
    return real


def open_target(path: str, root: str | None) -> str:
    """What the image stage opens for ``path``: the path itself, or, for a confined local
    path (``root`` set), its real location after ``check_real_location`` accepted it, so
    that a symlink swapped in after the read stage checked the path is refused too."""
    if root is None or is_url(path):
        return path
    return check_real_location(path, root)
