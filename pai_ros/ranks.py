"""Ranks with ties averaged: the one rank helper behind the OOD AUROC and the effects' rank correlation."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` ``[N]``, each tie given the mean of the ranks it spans (scipy's ``rankdata``).

    Ordinal ranks would order tied values by their position, inventing an order that is not in the data.
    """
    values = np.asarray(values, dtype=np.float64)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[values.argsort(kind="mergesort")] = np.arange(1, values.size + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse.ravel(), weights=ranks) / counts)[inverse.ravel()]
