"""`pai features ui`: the feature browser, served by the real command and used in a real browser.

A small synthetic results directory (two episodes of features.parquet, an analysis.json with
three features, PNG thumbnails of distinctive colours) is served by `pai features ui --port 0`
in a subprocess; Chromium (Debian's /usr/bin/chromium, driven by Playwright; nothing is
downloaded) selects a feature, checks that its thumbnails really loaded (and are that
feature's, by colour), its timeline and statistics, names it, and checks names.json and that
the name survives a reload. Requests to any other host are blocked and fail the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, run_pai
from ros_processes import Proc

from pai_ros.errors import UserError
from pai_ros.features.results import ResultsDir
from pai_ros.features.tables import FEATURES_FILE, FEATURES_REQUIRED

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking"]
PAI = REPO / ".pai" / "bin" / "pai"

EPISODES = (0, 3)
FRAMES = 20
CAMERAS = ("front", "wrist")
# Rank order; each feature fires on a few frames of each episode.
FEATURES = {17: {"rank": 1, "peaks": {0: [4, 11], 3: [7]}},
            5: {"rank": 2, "peaks": {0: [2], 3: [9, 15]}},
            42: {"rank": 3, "peaks": {0: [18], 3: [1]}}}
# One flat RGB colour per (feature, camera): a loaded thumbnail tells which one it is.
COLOURS = {(17, "front"): (220, 30, 30), (17, "wrist"): (30, 220, 30),
           (5, "front"): (30, 30, 220), (5, "wrist"): (220, 200, 20),
           (42, "front"): (200, 30, 200), (42, "wrist"): (20, 200, 200)}
FIRING_RATE = {17: 0.075, 5: 0.075, 42: 0.05}
URL_PREFIX = "feature browser on "


def _activation(feature: int, episode: int, frame: int) -> float:
    return 2.0 + 0.25 * frame if frame in FEATURES[feature]["peaks"].get(episode, []) else 0.0


def _write_features(path: Path, episode: int) -> None:
    rows = []
    for frame in range(FRAMES):
        fired = [(f, _activation(f, episode, frame)) for f in sorted(FEATURES) if _activation(f, episode, frame)]
        rows.append({"stamp_ns": frame * 33_000_000, "recv_ns": frame * 33_000_000, "topic": "",
                     "sae_id": "synthetic0000000", "num_features": 64,
                     "feature_indices": [f for f, _ in fired], "activations": [a for _, a in fired],
                     "token_counts": [2 for _ in fired], "num_tokens": 12, "mean_l0": float(len(fired)),
                     "reconstruction_error": 0.1, "ood_threshold": 1.0, "is_ood": False})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=FEATURES_REQUIRED), path)


def _write_thumbnail(path: Path, rgb: tuple[int, int, int]) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:] = rgb[::-1]  # cv2 writes BGR
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _analysis_entry(feature: int) -> dict:
    tops = sorted(((e, fr, _activation(feature, e, fr)) for e, frames in FEATURES[feature]["peaks"].items()
                   for fr in frames), key=lambda t: -t[2])
    top_frames = []
    for episode, frame, activation in tops:
        thumbs = {camera: f"thumbs/f{feature:06d}/e{episode:06d}_f{frame:06d}_{camera}.png" for camera in CAMERAS}
        top_frames.append({"episode": episode, "frame": frame, "activation": activation, "thumbnails": thumbs})
    stats = {"firing_rate": FIRING_RATE[feature], "mean": 0.2, "std": 0.8, "variance": 0.64,
             "max": tops[0][2], "mean_when_active": 4.1, "mean_token_count": 2.0}
    per_episode = {str(e): [{"frame": fr, "activation": _activation(feature, e, fr)} for fr in frames]
                   for e, frames in FEATURES[feature]["peaks"].items()}
    return {"feature": feature, "rank": FEATURES[feature]["rank"], "score": 0.64, "stats": stats,
            "top_frames": top_frames, "per_episode": per_episode}


def make_results(root: Path, *, analysed: bool = True) -> Path:
    """A results directory as `pai features record` + `pai features analyse` leave it, in small."""
    for episode in EPISODES:
        _write_features(root / f"episode_{episode:06d}" / FEATURES_FILE, episode)
    if not analysed:
        return root
    analysis_dir = root / "analysis"
    features = [_analysis_entry(f) for f in sorted(FEATURES, key=lambda f: FEATURES[f]["rank"])]
    for entry in features:
        for top in entry["top_frames"]:
            for camera, relative in top["thumbnails"].items():
                _write_thumbnail(analysis_dir / relative, COLOURS[(entry["feature"], camera)])
    analysis = {"format": "pai_ros.features.analysis/1", "sae_id": "synthetic0000000", "num_features": 64,
                "rank_by": "variance", "frames": FRAMES * len(EPISODES), "episodes": list(EPISODES),
                "cameras": list(CAMERAS), "dedup_window": 2, "dataset_root": None, "ranking_plot": "ranking.png",
                "features": features}
    _write_thumbnail(analysis_dir / "ranking.png", (128, 128, 128))
    (analysis_dir / "analysis.json").write_text(json.dumps(analysis, indent=2))
    return root


# ------------------------------------------------------------------ no browser

def test_help_does_not_import_gradio() -> None:
    code = "import sys; from pai_ros.cli import build_parser; build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_thumbnail_outside_results_is_refused(tmp_path: Path) -> None:
    from pai_ros.ui.browser import FeatureBrowser, load_image

    root = make_results(tmp_path / "results")
    outside = tmp_path / "outside.png"  # a real image, so only its place can be the reason
    _write_thumbnail(outside, (1, 2, 3))
    results = ResultsDir(root)
    for escape in ("../../outside.png", str(outside), "thumbs/../../../outside.png"):
        with pytest.raises(UserError, match="outside the results directory"):
            load_image(results, escape)
    assert load_image(results, "ranking.png").shape == (48, 64, 3)

    # An analysis that names such a path: the thumbnail is left out and the page says why.
    analysis = json.loads((root / "analysis" / "analysis.json").read_text())
    analysis["features"][0]["top_frames"][0]["thumbnails"]["front"] = "../../outside.png"
    (root / "analysis" / "analysis.json").write_text(json.dumps(analysis))
    shown, problems = FeatureBrowser(results).thumbnails(17, "front")
    assert len(shown) == len(analysis["features"][0]["top_frames"]) - 1
    assert len(problems) == 1 and "outside the results directory" in problems[0]


def test_names_order_the_list_and_page_input_is_checked(tmp_path: Path) -> None:
    from pai_ros.ui.browser import FeatureBrowser

    browser = FeatureBrowser(ResultsDir(make_results(tmp_path / "results")))
    assert browser.choices() == [("#17 (rank 1)", 17), ("#5 (rank 2)", 5), ("#42 (rank 3)", 42)]
    assert "Saved feature #42 as “lift”" in browser.save(42, "  lift ", "arm goes up")
    assert browser.choices()[0] == ("#42 · lift", 42)
    assert "description only" in browser.save(5, "", "unclear yet")
    assert [f for _, f in browser.choices()] == [42, 17, 5]  # a description alone does not promote it
    assert "Removed" in browser.save(5, "", "")
    for bad in (7, "../names.json", None):  # not analysed, not a number
        with pytest.raises(UserError):
            browser.entry(bad)
    with pytest.raises(UserError, match="episode 1 is not"):
        browser.timeline_figure(17, 1)
    assert browser.default_episode(5) == 3  # the episode of its strongest frame


def test_a_save_keeps_what_it_does_not_know_and_reads_null_as_empty(tmp_path: Path) -> None:
    """A null name read as the text "None", and keys of a newer version or a hand edit were dropped:
    the next browser save wrote both back."""
    from pai_ros.features.names import load_names, save_name

    path = tmp_path / "names.json"
    path.write_text(json.dumps({"5": {"name": None, "description": "x", "reviewer": "ada"},
                                "17": {"name": "grasp", "description": None, "tags": ["gripper"]}}))
    names = load_names(path)
    assert names[5]["name"] == "" and names[17]["description"] == "" and names[17]["updated"] == ""
    assert names[5]["reviewer"] == "ada" and names[17]["tags"] == ["gripper"]
    save_name(path, 5, "lift", "arm goes up")
    saved = json.loads(path.read_text())
    assert saved["5"]["name"] == "lift" and saved["5"]["reviewer"] == "ada"  # the saved feature keeps its keys
    assert saved["17"] == {"name": "grasp", "description": "", "updated": "", "tags": ["gripper"]}
    assert "None" not in path.read_text()


def test_a_name_saved_in_another_tab_is_not_overwritten_unseen(tmp_path: Path) -> None:
    # Tab A shows feature 42 unnamed; tab B names it; A's save (its stale form) overwrote B's name.
    from pai_ros.ui.browser import FeatureBrowser

    browser = FeatureBrowser(ResultsDir(make_results(tmp_path / "results")))
    tab_a, tab_b = browser.shown_version(42), browser.shown_version(42)
    assert "Saved" in browser.save(42, "lift", "", shown=tab_b)
    with pytest.raises(UserError, match=r"^feature #42 was changed elsewhere since this page showed it \(now “lift”, "
                                        r"saved .*\); pick the feature again to see it, then save$"):
        browser.save(42, "", "a description", shown=tab_a)
    assert browser.names()[42]["name"] == "lift"
    # Picked again, the form is current: the save goes through, and so does the next one from that form.
    again = browser.shown_version(42)
    assert "Saved" in browser.save(42, "lift", "arm goes up", shown=again)
    assert "Saved" in browser.save(42, "lift high", "arm goes up", shown=browser.shown_version(42))
    # What the form shows after a save is the entry that save wrote, not names.json read again later
    # (another server's save in between would pass for it, and the next save would overwrite that unseen).
    message, form = browser.save_shown(42, "lift higher", "arm goes up", browser.shown_version(42))
    browser.save(42, "elsewhere", "", shown=browser.shown_version(42))
    with pytest.raises(UserError, match="changed elsewhere"):
        browser.save(42, "lift higher", "and more", shown=form)


SAVES = 150  # per process: without the lock, measured to lose names every run


def _save_many(path: str, first: int, start) -> None:
    from pai_ros.features.names import save_name

    start.wait()  # both processes save at the same time, not one after the other's start-up
    for feature in range(first, first + SAVES):
        save_name(Path(path), feature, f"f{feature}", "")


def test_two_servers_saving_at_once_lose_no_name(tmp_path: Path) -> None:
    """Two `pai features ui` on one results directory: each save reads, changes and replaces
    names.json, so without a lock between processes one's save dropped the other's."""
    import multiprocessing

    from pai_ros.features.names import load_names

    path = tmp_path / "names.json"
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    workers = [spawn.Process(target=_save_many, args=(str(path), first, start)) for first in (0, 1000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert sorted(load_names(path)) == [*range(SAVES), *range(1000, 1000 + SAVES)]


def test_a_save_the_file_system_refuses_is_an_error_toast(tmp_path: Path) -> None:
    """A read-only results directory was a server traceback in the terminal and Errno text in the
    browser. Tests run as root, where no directory is read-only: names.json as a directory makes
    the same kind of failure (an OSError from the rename), for real."""
    import gradio as gr

    from pai_ros.ui.app import _as_gradio_error
    from pai_ros.ui.browser import FeatureBrowser

    results = make_results(tmp_path / "results")
    browser = FeatureBrowser(ResultsDir(results))
    (ResultsDir(results).names_path).mkdir()
    with pytest.raises(gr.Error, match="Is a directory"):
        _as_gradio_error(browser.save)(42, "lift", "")


def test_bag_results_without_images(tmp_path: Path) -> None:
    """A `pai bag2parquet` directory: one features.parquet (episode 0), no cameras, no thumbnails."""
    from pai_ros.ui.browser import FeatureBrowser

    root = tmp_path / "bag_results"
    _write_features(root / FEATURES_FILE, 0)
    entry = _analysis_entry(17)
    entry["top_frames"] = [{**t, "thumbnails": {}} for t in entry["top_frames"] if t["episode"] == 0]
    entry["per_episode"] = {"0": entry["per_episode"]["0"]}
    (root / "analysis").mkdir()
    (root / "analysis" / "analysis.json").write_text(json.dumps(
        {"format": "pai_ros.features.analysis/1", "sae_id": "bag", "num_features": 64, "rank_by": "variance",
         "frames": FRAMES, "episodes": [0], "cameras": [], "dataset_root": None, "ranking_plot": None,
         "features": [entry]}))
    browser = FeatureBrowser(ResultsDir(root))
    images, notice = browser.top_frame_images(17)
    assert images == {} and "No thumbnails" in notice
    assert browser.ranking_image() is None
    assert browser.default_episode(17) == 0
    figure = browser.timeline_figure(17, 0)
    line = figure.axes[0].lines[0].get_ydata()
    assert len(line) == FRAMES and line[11] == pytest.approx(_activation(17, 0, 11))
    assert "| 0 | 11 |" in browser.top_frames_markdown(17)


def test_ui_without_analysis_is_one_line(tmp_path: Path) -> None:
    root = make_results(tmp_path / "results", analysed=False)
    res = run_pai("features", "ui", str(root), "--port", "0", timeout=120)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no analysis yet" in lines[0] and "pai features analyse" in lines[0], res.stderr


# ------------------------------------------------------------------ the real server

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Proc]]:
    """`pai features ui RESULTS --port 0` (default host) in a subprocess: (URL, RESULTS, process)."""
    root = make_results(tmp_path_factory.mktemp("browser") / "results")
    command = [str(PAI)] if PAI.is_file() else [sys.executable, "-m", "pai_ros.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(root.parent / "gradio_cache")}
    proc = Proc([*command, "features", "ui", str(root), "--port", "0"], env, "pai features ui")
    try:
        line = proc.wait_for_line(lambda s: s.startswith(URL_PREFIX), timeout=120)
        yield line[len(URL_PREFIX):].strip(), root, proc
    finally:
        # A condition wait, not a speed check: a run with two benchmarks beside the suite took over 20 s to
        # shut Gradio down after Ctrl-C (then killed: rc -9) on 2 cores.
        rc = proc.stop(signal.SIGINT, timeout=90)
    assert rc == 0, "Ctrl-C should stop the browser cleanly:\n" + "\n".join(proc.lines[-20:])


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_binds_localhost_by_default(server: tuple[str, Path, Proc]) -> None:
    url, _, proc = server
    parsed = urlparse(url)
    assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1" and parsed.port, url
    assert proc.popen.poll() is None
    assert _listening_addresses(parsed.port) == {"0100007F"}  # 127.0.0.1, nothing else

    # The page asks the browser for nothing from other hosts and says so in its CSP.
    with urllib.request.urlopen(url, timeout=30) as response:
        html = response.read().decode()
        csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    for external in ("fonts.googleapis.com", "fonts.gstatic.com", "cdnjs.cloudflare.com"):
        assert external not in html


def _launch_chromium(playwright):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: `make setup` installs it when run as root "
                    "(or: sudo apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# In-page helpers (JavaScript).
_IMAGES_LOADED = "sel => { const imgs = [...document.querySelectorAll(sel)]; " \
                 "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
_CENTRE_COLOURS = """sel => [...document.querySelectorAll(sel)].map(img => {
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
    return Array.from(ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3));
})"""


def _select_feature(page, label: str, feature: int) -> None:
    """Pick ``label`` in the feature list and wait until the page shows that feature."""
    from playwright.sync_api import expect
    expect.set_options(timeout=30_000)  # a busy machine renders slowly; 5 s is the default

    field = page.locator("#feature-list input")
    field.blur()  # the list opens on focus: a click into a focused field would not open it
    field.click()
    page.get_by_role("option", name=label, exact=True).click()
    expect(page.locator("#feature-title")).to_contain_text(f"Feature #{feature}", timeout=30_000)


def _option_labels(page) -> list[str]:
    """The feature list's labels, top to bottom (opens and closes the list)."""
    field = page.locator("#feature-list input")
    field.blur()
    field.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    labels = [text.strip().splitlines()[-1] for text in options.all_inner_texts()]  # after the ✓ of the selected
    field.press("Escape")
    field.blur()
    return labels


def test_browse_and_name_a_feature(server: tuple[str, Path, Proc]) -> None:
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=30_000)  # a busy machine renders slowly; 5 s is the default

    url, root, _ = server
    origin = urlparse(url).netloc
    foreign: list[str] = []

    def block_foreign(route) -> None:
        foreign.append(route.request.url)
        route.abort()

    with sync_playwright() as p:
        browser = _launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route(lambda u: urlparse(u).scheme in ("http", "https", "ws", "wss")
                          and urlparse(u).netloc != origin, block_foreign)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(url, wait_until="domcontentloaded")
            # The first feature in rank order is shown on load.
            expect(page.locator("#feature-title")).to_contain_text("Feature #17")
            assert _option_labels(page) == ["#17 (rank 1)", "#5 (rank 2)", "#42 (rank 3)"]

            _select_feature(page, "#5 (rank 2)", 5)
            top_frames = sum(len(v) for v in FEATURES[5]["peaks"].values())
            for camera in CAMERAS:
                images = f"#gallery-{camera} img"
                expect(page.locator(images)).to_have_count(top_frames)
                page.wait_for_function(_IMAGES_LOADED, arg=images)
                expect(page.locator(images).first).to_be_visible()
                colours = page.evaluate(_CENTRE_COLOURS, images)
                assert all(np.abs(np.subtract(c, COLOURS[(5, camera)])).max() <= 3 for c in colours), colours
            expect(page.locator("#gallery-front")).to_contain_text("ep 3 · frame 15")
            expect(page.locator("#feature-stats")).to_contain_text("firing rate")
            expect(page.locator("#feature-stats")).to_contain_text(f"{FIRING_RATE[5]:.4g}")
            page.wait_for_function(_IMAGES_LOADED, arg="#timeline img")  # the matplotlib timeline
            # The strongest frame of #5 is in episode 3: its timeline is the one shown.
            expect(page.locator("#episode input")).to_have_value("3")
            # A thumbnail from episode 0 (the third strongest) switches the timeline to its episode.
            page.locator("#gallery-front img").nth(2).click()
            expect(page.locator("#episode input")).to_have_value("0")

            page.locator("#feature-name input, #feature-name textarea").fill("gripper closes")
            page.locator("#feature-description textarea").fill("fires while the gripper closes on the cube")
            page.locator("#save-name").click()
            expect(page.locator("#save-status")).to_contain_text("Saved feature #5")
            saved = json.loads((root / "names.json").read_text())
            assert saved["5"]["name"] == "gripper closes"
            assert saved["5"]["description"] == "fires while the gripper closes on the cube"
            expect(page.locator("#feature-list input")).to_have_value("#5 · gripper closes")

            # A second tab shows #5; the first renames it; the second's save from its older form is refused
            # (the error toast says why) and the first tab's name stays.
            other = context.new_page()
            other.set_default_timeout(30_000)
            other.goto(url, wait_until="domcontentloaded")
            expect(other.locator("#feature-title")).to_contain_text("Feature #5 · gripper closes")
            page.locator("#feature-name input, #feature-name textarea").fill("gripper closes tight")
            page.locator("#save-name").click()
            expect(page.locator("#save-status")).to_contain_text("Saved feature #5 as “gripper closes tight”")
            other.locator("#feature-description textarea").fill("an edit from an older form")
            other.locator("#save-name").click()
            expect(other.get_by_text("was changed elsewhere since this page showed it").first).to_be_visible()
            assert json.loads((root / "names.json").read_text())["5"]["name"] == "gripper closes tight"
            other.close()
            page.locator("#feature-name input, #feature-name textarea").fill("gripper closes")
            page.locator("#save-name").click()
            expect(page.locator("#save-status")).to_contain_text("Saved feature #5 as “gripper closes”")

            page.reload(wait_until="domcontentloaded")
            # Named features come first, so the named one is now first and shown on load.
            expect(page.locator("#feature-title")).to_contain_text("Feature #5 · gripper closes")
            assert _option_labels(page) == ["#5 · gripper closes", "#17 (rank 1)", "#42 (rank 3)"]
            _select_feature(page, "#17 (rank 1)", 17)
            expect(page.locator("#feature-name input, #feature-name textarea")).to_have_value("")
            _select_feature(page, "#5 · gripper closes", 5)
            expect(page.locator("#feature-name input, #feature-name textarea")).to_have_value("gripper closes")
            expect(page.locator("#feature-description textarea")).to_have_value(
                "fires while the gripper closes on the cube")

            # No filesystem path of the results reaches the page.
            assert str(root) not in page.content()
        finally:
            browser.close()
    assert foreign == [], f"the page tried to reach other hosts: {foreign}"


def test_a_piece_of_a_results_directory_names_the_whole(tmp_path: Path) -> None:
    """`ui R/analysis` said "analyse R/analysis first", which said "record first"; `analyse R/episode_000000`
    wrote an analysis/ inside the episode. Each now says in one line to pass R."""
    root = make_results(tmp_path / "results")
    # As `pai features record` leaves it: its record.json marks the episode folders as its own.
    (root / "record.json").write_text(json.dumps({"sae_id": "synthetic0000000", "episodes": list(EPISODES)}))
    for command, piece, what in ((("ui", "--port", "0"), "analysis", "the analysis/ folder"),
                                 (("analyse", "--quiet"), "analysis", "the analysis/ folder"),
                                 (("analyse", "--quiet"), "episode_000003", "one episode"),
                                 (("ui", "--port", "0"), "episode_000000", "one episode")):
        res = run_pai("features", command[0], str(root / piece), *command[1:], timeout=120)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and "Traceback" not in res.stderr and len(lines) == 1, res.stderr
        assert lines[0].endswith(f"{root / piece} is {what} of the results directory {root}: pass {root} instead")
    assert not (root / "episode_000003" / "analysis").exists()
    # A results directory that is only named "analysis" or "episode_000123" (a bag's, say) is no piece of another.
    alone = tmp_path / "analysis"
    _write_features(alone / FEATURES_FILE, 0)
    assert [s.episode for s in ResultsDir(alone).sources()] == [0]
    named = tmp_path / "bags" / "episode_000123"
    _write_features(named / FEATURES_FILE, 0)
    assert [s.episode for s in ResultsDir(named).sources()] == [0]
