"""SAE features over recorded data: record them, rank them, measure what they do, name them.

``record`` runs a policy and its SAE over dataset episodes, as the live node would, into the
``tables`` (``features.parquet``, ``feature_tokens.parquet``; the same schema ``pai bag2parquet``
writes from a live run); ``results`` reads such a directory; ``analyse`` ranks features and draws
their top frames; ``effects`` ablates and clamps each one to measure its effect on the actions;
``names`` keeps the names people give them in the browser. ``commands`` holds ``pai features``.
"""
