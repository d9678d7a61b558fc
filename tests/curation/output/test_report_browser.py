"""report.html in a real browser: headless Chromium loads the page, every image decodes, and
every number tagged with a manifest path shows the manifest's value.

The page has no JavaScript of its own; the test loads a copy with a small probe script
appended that, after the load event, writes what the browser made of the page (each
image's natural size, each ``data-key`` element's text) into the DOM, which
``--dump-dom`` prints. Skipped, with the reason, when no Chromium is installed
(Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from curation.output.report import SAMPLES, render_report
from schemas.dataset import load_manifest, shard_paths

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
PROBE = """<script>
addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}));
  const keys = [...document.querySelectorAll("[data-key]")].map(e => ({key: JSON.parse(e.dataset.key), text: e.textContent}));
  const marks = [...document.querySelectorAll("mark[data-lang]")].map(m => m.textContent);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({imgs, keys, marks, svgs: document.querySelectorAll("svg").length});
  document.body.appendChild(pre);
});
</script>"""


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found (apt-get install chromium); the report's browser check needs one")


def headless(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def probe(page: Path) -> dict[str, Any]:
    """What Chromium made of ``page`` after its load event."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    dom = headless("--virtual-time-budget=10000", "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; dumped DOM starts {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


def at(manifest: dict[str, Any], path: list[Any]) -> Any:
    value: Any = manifest
    for key in path:
        value = value[key]
    return value


@pytest.mark.slow
def test_report_in_chromium_images_decode_and_numbers_equal_the_manifest(demo_out, tmp_path):
    browser()
    ds = demo_out / "dataset"
    page = tmp_path / "report.html"
    page.write_text(render_report(str(ds)), encoding="utf-8")
    seen = probe(page)

    manifest = load_manifest(str(ds))
    rows = {r["id"]: r["image"] for p in shard_paths(str(ds), "pairs") for r in pq.read_table(p, columns=["id", "image"]).to_pylist()}
    assert len(seen["imgs"]) == min(SAMPLES, len(rows))
    for img in seen["imgs"]:  # decoded, at the size the shard says
        assert img["ok"] and (img["w"], img["h"]) == (rows[img["alt"]]["width"], rows[img["alt"]]["height"]), img

    shown = {json.dumps(k["key"]): k["text"] for k in seen["keys"]}
    for entry in seen["keys"]:
        want = at(manifest, entry["key"])
        assert float(entry["text"].replace(",", "")) == pytest.approx(want, abs=1e-9), entry
    must = [["counts", "input_records"], ["counts", "output_records"], ["counts", "rejected_records"],
            *(["languages", lang] for lang in manifest["languages"]),
            *(["counts", "rejected_by_reason", k] for k in manifest["counts"]["rejected_by_reason"]),
            *(["relevance", "by_lang", lang, s, "n"] for lang, c in manifest["relevance"]["by_lang"].items() for s in c)]
    assert [k for k in must if json.dumps(k) not in shown] == []
    assert seen["svgs"] >= 9 and seen["marks"] and all(m.strip() for m in seen["marks"])


@pytest.mark.slow
def test_report_screenshot_is_drawn(demo_out, tmp_path):
    from PIL import Image

    browser()
    page = tmp_path / "report.html"
    page.write_text(render_report(str(demo_out / "dataset")), encoding="utf-8")
    shot = tmp_path / "report.png"
    headless("--hide-scrollbars", "--window-size=1100,2400", f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("L")
    assert image.size == (1100, 2400)
    dark = sum(image.histogram()[:128])
    assert dark > 0.01 * 1100 * 2400  # text and bars, not a blank page
