"""The feature browser behind ``pai features ui``.

``browser`` turns a results directory into what the page shows (labels, images, tables, plots)
without importing Gradio, so it can be tested and reused on its own; ``app`` lays it out as a
Gradio page and serves it. Gradio is imported only by ``app``, which only the ``ui`` command
imports: ``pai --help`` and every other command stay fast.
"""
