"""Make the README's pictures from a `make demo` output: heatmaps and the feature browser.

    python scripts/readme_images.py [--demo-dir out/demo] [--out docs/images]

Writes ``heatmaps.jpg`` (the first rows of the demo's contact sheet: front and wrist camera
with the policy's attention overlaid) and ``feature_browser.jpg`` (a screenshot of
``pai features ui`` on the demo's dataset recording, taken with the system Chromium through
Playwright). JPEG, small enough to commit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
URL_PREFIX = "feature browser on "


def heatmaps(demo: Path, out: Path) -> Path:
    sheet = cv2.imread(str(demo / "heatmaps_contact_sheet.png"))
    if sheet is None:
        raise SystemExit(f"readme_images: no {demo / 'heatmaps_contact_sheet.png'}: run `make demo` first")
    from pai_ros.demo.outputs import SHEET_COLUMNS, SHEET_TICKS

    # Keep at most two full rows of the sheet (readable at README width), never a row padded with black.
    report = json.loads((demo / "report.json").read_text())
    ticks = min(SHEET_TICKS, int(report["heatmap_frames"]))
    sheet_rows = -(-ticks // SHEET_COLUMNS)
    keep = min(2, max(1, ticks // SHEET_COLUMNS))
    rows = sheet[: sheet.shape[0] * keep // sheet_rows]
    path = out / "heatmaps.jpg"
    cv2.imwrite(str(path), rows, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def feature_browser(demo: Path, out: Path) -> Path:
    from playwright.sync_api import expect, sync_playwright

    results = demo / "features"
    if not (results / "analysis" / "analysis.json").is_file():
        raise SystemExit(f"readme_images: no feature analysis in {results}: run `make demo` first")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "pai_ros.cli", "features", "ui", str(results), "--port", "0"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, url = time.monotonic() + 120, None
        assert server.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("readme_images: `pai features ui` exited before serving")
            if line.startswith(URL_PREFIX):
                url = line[len(URL_PREFIX):].strip()
        if url is None:
            raise SystemExit("readme_images: `pai features ui` did not start within 120 s")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            expect(page.locator("#feature-title")).to_contain_text("Feature #", timeout=60_000)
            for images in ("#gallery-front img", "#gallery-wrist img", "#timeline img"):
                page.wait_for_function("sel => { const i = [...document.querySelectorAll(sel)]; "
                                       "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }",
                                       arg=images, timeout=60_000)
            png = out / "feature_browser.png"
            page.screenshot(path=str(png), full_page=False)
            browser.close()
        path = out / "feature_browser.jpg"
        cv2.imwrite(str(path), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 80])
        png.unlink()
        return path
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, default=REPO / "out" / "demo")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (heatmaps(args.demo_dir, args.out), feature_browser(args.demo_dir, args.out)):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
