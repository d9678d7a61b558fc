"""Strategies for hostile reader inputs, and the checks every reader's output must pass.

``check_items`` is the contract: every item is a ``RawRecord`` or a read-stage ``Reject``
with a known reason whose rejects-table row can be written; each record can go through
the image and text stages as a build would (``downstream``) and ends as exactly one
written row or one record-level reject, never an exception.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import tarfile
from typing import Any

from apache_beam.pvalue import TaggedOutput
from hypothesis import event
from hypothesis import strategies as st
from PIL import Image

from curation.clean.images import ValidateImagesFn
from curation.clean.texts import PARALLEL_TAG, NormaliseTextsFn
from curation.config import DEFAULT_COLUMNS, ImageConfig, SourceConfig, TextConfig
from curation.read.records import RawRecord
from curation.read.webdataset import split_member_name
from schemas.rows import REJECTS_TAG, Reject, reject_row
from schemas.validate import validate_rows

# The budget: examples per property (conftest.py's profile), and whole builds (a few
# seconds each) per build property.
EXAMPLES = int(os.environ.get("M3CURATE_FUZZ_EXAMPLES", "25"))
BUILD_EXAMPLES = int(os.environ.get("M3CURATE_FUZZ_BUILDS", max(2, EXAMPLES // 50)))

READ_REASONS = {
    "unreadable_file", "malformed_row", "invalid_utf8", "missing_column", "wrong_type", "missing_image",
    "download_failed", "unsafe_member", "member_too_large", "unaligned", "unsafe_path",
}
COLUMNS = sorted({*DEFAULT_COLUMNS.values(), "jpg", "status", "error_message"})


def png(size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


# --- strategies ----------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


json_values = st.recursive(json_scalars, _nested, max_leaves=8)
column_names = st.sampled_from(COLUMNS) | st.text(max_size=8)
image_values = st.sampled_from(["img.png", "missing.jpg", "../outside.png", "/etc/hostname", "gs://b/x.jpg", "",
                                "img.png/..", "./img.png"]) | st.text(max_size=12)
# A row: some role columns with plausible values, then anything in any column.
rows = st.builds(
    lambda plausible, anything: {**plausible, **anything},
    st.fixed_dictionaries({}, optional={"caption": st.text(max_size=30), "text": st.text(max_size=30),
                                        "image": image_values, "src": st.text(max_size=20), "tgt": st.text(max_size=20),
                                        "key": st.text(max_size=8) | st.integers()}),
    st.dictionaries(column_names, json_values, max_size=6),
)
kinds = st.sampled_from(["pair", "weak", "parallel"])
column_maps = st.dictionaries(st.sampled_from(["caption", "image", "id"]), column_names, max_size=2)


def source_for(path: str, fmt: str, kind: str, columns: dict[str, str] | None = None, **extra: Any) -> SourceConfig:
    columns = {k: v for k, v in (columns or {}).items() if k != "caption" or kind == "pair"}
    if kind == "parallel":
        columns.pop("image", None)
    return SourceConfig(name="fuzz", format=fmt, paths=[path], kind=kind, columns=columns, **extra)


# --- tar members ---------------------------------------------------------------------------

MEMBER_TYPES = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE,
                tarfile.CHRTYPE, tarfile.FIFOTYPE]
member_names = (
    st.builds(lambda d, k, e: f"{d}{k}.{e}", st.sampled_from(["", "./", "a/", "../", "/abs/", "a/../"]),
              st.sampled_from(["k1", "k2", "k.1", ""]), st.sampled_from(["jpg", "png", "txt", "json", "JPG", "x", "txt.gz"]))
    | st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=20)
)
member_data = st.sampled_from([b"", b"{}", b'{"caption": "a cat"}', b'{"caption": 3}', b"[1]", b"\xff\xfe",
                               b"a caption"]) | st.binary(max_size=64) | st.just(png())
random_members = st.tuples(member_names, st.sampled_from(MEMBER_TYPES), member_data).map(lambda m: [m])
# A well-formed sample (KEY.png + KEY.txt and/or KEY.json) with random texts, so that
# records reach the image and text stages too.
sample_members = st.builds(
    lambda key, txt, meta: [(f"{key}.png", tarfile.REGTYPE, png())]
    + ([(f"{key}.txt", tarfile.REGTYPE, txt.encode("utf-8", "surrogatepass"))] if txt is not None else [])
    + ([(f"{key}.json", tarfile.REGTYPE, json.dumps(meta).encode())] if meta is not None else []),
    st.sampled_from(["s1", "s2", "dir/s3", "s.4"]), st.none() | st.text(max_size=20),
    st.none() | st.dictionaries(st.sampled_from(["caption", "text", "key", "url", "lang"]), json_values, max_size=3),
)
members = st.lists(random_members | sample_members, max_size=5).map(lambda groups: [m for g in groups for m in g])


def write_tar(members_: list[tuple[str, int, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members_:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "../../etc/passwd"
            regular = kind == tarfile.REGTYPE
            info.size = len(data) if regular else 0
            tar.addfile(info, io.BytesIO(data) if regular else None)
    return buffer.getvalue()


def samples_in(data: bytes) -> int:
    """How many samples a shard holds: runs of adjacent members with one key, plain
    directory entries aside (as the tar itself lists its members)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
        keys = [split_member_name(m.name)[0] for m in tar
                if not (m.isdir() and not m.name.startswith("/") and ".." not in m.name.split("/"))]
    return sum(1 for _ in itertools.groupby(keys))


# --- the contract --------------------------------------------------------------------------


def check_reject(reject: Reject, stage: str | None = None) -> None:
    assert isinstance(reject.detail, str) and reject.reason
    if stage is not None:
        assert reject.stage == stage, reject
    validate_rows([reject_row(reject)], "rejects")  # the rejects table can hold it


_IMAGES = ValidateImagesFn(ImageConfig(min_side=8))
_IMAGES.setup()
_TEXTS = NormaliseTextsFn(TextConfig())


def downstream(record: RawRecord) -> str:
    """Run ``record`` through the image and text stages and check what comes out: one
    written row or one record-level reject (text-level rejects beside a row). Returns the
    outcome: "row" or "stage/reason"."""
    (after_image,) = list(_IMAGES.process(record))
    if isinstance(after_image, TaggedOutput):
        check_reject(after_image.value, "image")
        return after_image.value.key
    outcome = None
    for item in _TEXTS.process(after_image):
        if isinstance(item, TaggedOutput) and item.tag == REJECTS_TAG:
            check_reject(item.value, "text")
            if item.value.level == "record":
                assert outcome is None
                outcome = item.value.key
        else:
            table = "parallel" if isinstance(item, TaggedOutput) and item.tag == PARALLEL_TAG else "pairs"
            validate_rows([item.value if isinstance(item, TaggedOutput) else item], table)
            assert outcome is None
            outcome = "row"
    assert outcome is not None
    return outcome


def check_items(items: list[Any], expected: int | None = None) -> list[Any]:
    """The reader contract (module docstring). ``expected``: the number of input records,
    when the test knows it: then every record is accounted for, one item each, unless the
    file ended early (one ``unreadable_file`` reject, last, standing for the rest)."""
    unreadable = [i for i, item in enumerate(items) if isinstance(item, Reject) and item.reason == "unreadable_file"]
    assert unreadable in ([], [len(items) - 1]), "unreadable_file must end a file's items"
    for item in items:
        if isinstance(item, Reject):
            assert item.reason in READ_REASONS, item
            check_reject(item, "read")
            event(item.key)
        else:
            assert isinstance(item, RawRecord), item
            assert all(v is None or isinstance(v, str) for v in item.fields.values()), item.fields
            check_reject(Reject.of(item, "text", "probe", "any later stage may reject it"))
            event(f"record -> {downstream(item)}")
    if expected is not None:
        if unreadable:
            assert len(items) <= expected + 1, (len(items), expected)
        else:
            assert len(items) == expected, (len(items), expected)
    return items


def jsonl_bytes(rows_: list[dict[str, Any]], ascii_only: bool) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows_).encode("utf-8", "surrogatepass")


def text_lines(data: bytes) -> list[str]:
    """The lines a reader sees in ``data`` (UTF-8, BOM dropped, bad bytes escaped, LF ends a
    line, a last line without LF counts)."""
    text = data.decode("utf-8-sig", "surrogateescape") if data.startswith(b"\xef\xbb\xbf") else data.decode(
        "utf-8", "surrogateescape")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines
