"""The feature browser page (Gradio Blocks) and its server (``pai features ui``).

Layout: a header with what was analysed; on the left the feature list (named features first)
and the ranking plot; on the right the selected feature: title, name/description with Save,
its top frames per camera (heatmap thumbnails), its activation over an episode, its statistics.

The page works on feature numbers and episodes only; :class:`~pai_ros.ui.browser.FeatureBrowser`
checks them and turns them into images and tables on the server. Nothing here reaches the
internet: analytics are off, there are no share links, fonts are the system's and
:mod:`pai_ros.ui.offline` keeps the page from loading anything from another host.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from functools import wraps
from typing import Any

# Before gradio is imported: it reads this at import time (version checks, telemetry).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr
from starlette.middleware import Middleware

from pai_ros.errors import UserError
from pai_ros.features.names import MAX_DESCRIPTION, MAX_NAME, shown_version
from pai_ros.features.results import ResultsDir
from pai_ros.ui.browser import FeatureBrowser
from pai_ros.ui.offline import OfflinePageMiddleware

TITLE = "pai feature browser"
_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no Google Fonts download
_MONO_FONTS = ["ui-monospace", "Consolas", "monospace"]
# Gradio gives galleries a tall minimum height; a strip of thumbnails needs only its rows.
_CSS = ".pai-gallery .grid-wrap { min-height: 0 !important; }"


def _as_gradio_error(fn):
    """Show a :class:`UserError` or an OS error (a read-only results directory, a full disk) as
    Gradio's error toast instead of a server traceback."""
    @wraps(fn)  # keeps the signature and annotations Gradio reads (gr.SelectData parameters)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise gr.Error(f"{exc.strerror or exc}{where}") from None
    return wrapper


def _gallery(camera: str) -> gr.Gallery:
    """One camera's top frames: a grid of heatmap thumbnails, click for a large view."""
    return gr.Gallery(label=f"top frames · {camera}", columns=4, height="auto", object_fit="contain",
                      format="png", allow_preview=True, interactive=False, min_width=320,
                      elem_id=f"gallery-{camera}", elem_classes=["pai-gallery"])


def build_app(browser: FeatureBrowser) -> gr.Blocks:
    """The page. Every handler takes feature numbers/episodes from the page and nothing else."""
    theme = gr.themes.Default(font=_SYSTEM_FONTS, font_mono=_MONO_FONTS)
    first = next(iter(browser.features))
    with gr.Blocks(title=TITLE, theme=theme, css=_CSS, analytics_enabled=False,
                   delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# Feature browser\n{browser.summary_markdown()}")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                feature_list = gr.Dropdown(choices=browser.choices(), value=first, label="Feature",
                                           info="named features first, then by rank; type to filter",
                                           filterable=True, interactive=True, elem_id="feature-list")
                ranking = browser.ranking_image()
                with gr.Accordion("Ranking of all features", open=False, visible=ranking is not None):
                    gr.Image(value=ranking, show_label=False, interactive=False, format="png")
            with gr.Column(scale=4):
                title = gr.Markdown(elem_id="feature-title")
                with gr.Row(equal_height=True):
                    name = gr.Textbox(label="Name", max_lines=1, max_length=MAX_NAME, scale=2, elem_id="feature-name",
                                      placeholder="e.g. gripper closes")
                    description = gr.Textbox(label="Description", lines=2, max_length=MAX_DESCRIPTION, scale=4,
                                             elem_id="feature-description",
                                             placeholder="what the feature responds to, how you know")
                    save = gr.Button("Save", variant="primary", scale=0, min_width=100, elem_id="save-name")
                status = gr.Markdown(elem_id="save-status")
                gr.Markdown("Top frames with this feature's heatmap; click one to enlarge it and mark it on the "
                            "timeline.", visible=bool(browser.cameras))
                with gr.Row():
                    galleries = {camera: _gallery(camera) for camera in browser.cameras}
                notice = gr.Markdown(elem_id="image-notice")
                with gr.Row():
                    episode = gr.Dropdown(choices=browser.episodes, label="Episode", scale=0, min_width=120,
                                          interactive=True, elem_id="episode")
                    timeline = gr.Plot(label="activation over the episode", scale=1, elem_id="timeline")
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("### Statistics")
                        stats = gr.Markdown(elem_id="feature-stats")
                    with gr.Column():
                        gr.Markdown("### Top frames")
                        top_frames = gr.Markdown(elem_id="top-frames")

        shown = gr.State("")  # the names.json entry the form was filled from (see names.save_name)
        feature_outputs = [title, name, description, status, *galleries.values(), notice, episode, timeline,
                           stats, top_frames, shown]

        @_as_gradio_error
        def show_feature(feature: int) -> list[Any]:
            """Everything about one feature, names read fresh from names.json."""
            entry = browser.names().get(int(browser.entry(feature)["feature"]), {})
            images, notice_text = browser.top_frame_images(feature)
            default_episode = browser.default_episode(feature)
            return [browser.title(feature), entry.get("name", ""), entry.get("description", ""), "",
                    *([(t.image, t.caption) for t in images[c]] for c in browser.cameras), notice_text,
                    default_episode, browser.timeline_figure(feature, default_episode),
                    browser.statistics_markdown(feature), browser.top_frames_markdown(feature), shown_version(entry)]

        @_as_gradio_error
        def refresh_list() -> Any:
            """On every page load: labels from names.json as it is now, the first feature selected."""
            choices = browser.choices()
            return gr.update(choices=choices, value=choices[0][1])

        @_as_gradio_error
        def show_episode(feature: int, chosen_episode: int) -> Any:
            return browser.timeline_figure(feature, chosen_episode)

        def frame_picker(camera: str):
            @_as_gradio_error
            def pick_frame(feature: int, evt: gr.SelectData) -> list[Any]:
                """A clicked thumbnail: its episode's timeline, the frame marked."""
                shown, _ = browser.thumbnails(feature, camera)
                if not isinstance(evt.index, int) or not 0 <= evt.index < len(shown):
                    raise UserError("no such thumbnail")
                picked = shown[evt.index]
                return [picked.episode, browser.timeline_figure(feature, picked.episode, highlight=picked.frame)]
            return pick_frame

        @_as_gradio_error
        def save_name(feature: int, new_name: str, new_description: str, form_shown: str) -> list[Any]:
            message, now_shown = browser.save_shown(feature, new_name, new_description, form_shown)
            return [message, gr.update(choices=browser.choices(), value=int(feature)), browser.title(feature),
                    now_shown]

        demo.load(refresh_list, outputs=feature_list).then(show_feature, inputs=feature_list,
                                                           outputs=feature_outputs)
        feature_list.input(show_feature, inputs=feature_list, outputs=feature_outputs)
        episode.input(show_episode, inputs=[feature_list, episode], outputs=timeline)
        for camera, gallery in galleries.items():
            gallery.select(frame_picker(camera), inputs=feature_list, outputs=[episode, timeline])
        save.click(save_name, inputs=[feature_list, name, description, shown],
                   outputs=[status, feature_list, title, shown],
                   concurrency_limit=1)  # one save at a time: names.json is read, changed, replaced
    return demo


def _bindable_port(host: str, port: int) -> int:
    """``port`` (or, for 0, one the kernel picks) after checking it can be bound on ``host``.

    Gradio's own message for a busy port talks about its environment variables and ``launch()``;
    a command-line user needs to hear about ``--port`` and ``--host``.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            sock.bind(address)
            return int(sock.getsockname()[1])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use; pick another with --port (0: any free one)") from None
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host") from None


def _wait_until_interrupted(demo: gr.Blocks) -> None:
    """Serve until Ctrl-C, then stop the server (Gradio then deletes the thumbnails it cached)."""
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        demo.close()
        print("feature browser stopped", flush=True)


def serve(results: ResultsDir, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the browser until interrupted; print one line with its URL first (tests read it)."""
    browser = FeatureBrowser(results)
    demo = build_app(browser)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=_bindable_port(host, port), share=False, inbrowser=False,
                prevent_thread_lock=True, quiet=True, show_api=False, show_error=True, ssr_mode=False,
                enable_monitoring=False, pwa=False, mcp_server=False, allowed_paths=[],
                app_kwargs={"middleware": [Middleware(OfflinePageMiddleware)]})
    print(f"feature browser on {demo.local_url.rstrip('/')}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: bound to {host}: anyone who can reach this machine can read and rename features",
              file=sys.stderr, flush=True)
    _wait_until_interrupted(demo)
