"""Run-time parameter changes of a live tick, all or nothing.

``ros2 param set``, ``ros2 param load`` and ``set_parameters_atomically`` expect a request to
apply whole or not at all. A request may switch the heatmap method and reload the SAE; when one
of its changes is refused (an SAE that does not fit the policy, a method the memory cannot hold),
the ones applied before it are undone, and the error says what stays in force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pai_ros.errors import UserError
from pai_ros.live.tick import LiveTick

#: The parameters that change a running tick; every other parameter is fixed at start.
RUN_TIME_PARAMETERS = ("sae_path", "heatmap_method")


def reconfigure(live: LiveTick, changes: Iterable[tuple[str, Any]]) -> list[str]:
    """Apply ``(parameter, value)`` changes in order; returns what changed, for the log.

    Raises :class:`UserError` naming what was kept when a change is refused; by then every
    change of the request is undone. Values equal to what is in force change nothing, except
    that ``sae_path`` is compared with the directory loaded now (not the one started with).
    """
    undo: list[Callable[[], None]] = []
    done: list[str] = []
    for name, value in changes:
        try:
            if name == "sae_path" and value != live.sae_path:
                previous = (live.sae, live.sae_path)
                described = live.reload_sae(value)
                live.sae_path = value
                undo.append(lambda sae=previous[0], path=previous[1]: _restore_sae(live, sae, path))
                done.append(f"reloaded {described} from {value}")
            elif name == "heatmap_method" and value != live.heatmap_method:
                undo.append(live.set_heatmap_method(value))  # its undo cannot be refused
                done.append(f"heatmap_method is now {value}")
        except Exception as exc:  # noqa: BLE001 - not only UserError: an unreadable cfg.json (PermissionError),
            # '~nosuchuser' (RuntimeError) or a GPU out of memory must refuse the request, not end the node
            for step in reversed(undo):
                step()
            if name == "sae_path":
                kept = "SAE not reloaded" + (f", keeping {live.sae.loaded.sae_id}" if live.sae else "")
            else:
                kept = f"heatmap_method not changed, keeping {live.heatmap_method}"
            undone = " (the request's other changes were undone)" if undo else ""
            why = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            raise UserError(f"{kept}{undone}: {why}") from None
    return done


def _restore_sae(live: LiveTick, sae: Any, path: str) -> None:
    live.sae, live.sae_path = sae, path
