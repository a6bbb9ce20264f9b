"""Stand-ins for the compiled packages that LeRobot imports but ACT inference never uses.

LeRobot 0.4.4's ACT import path reaches ``lerobot.datasets`` (through the optimiser config and
the normaliser processor), which imports ``datasets``, ``pandas``, ``pyarrow`` and ``av`` at
module level. None of them runs when an ACT policy is built and called, but their Python 3.12
wheels weigh about 107 MB, more than can be carried to a GPU machine that has no package index.

While :func:`active` is in force, importing one of :data:`NAMES` that is not installed (or any
of them with ``force=True``) gives a placeholder module. Module-level statements that touch it
(``pa.struct(...)``, ``register_feature(...)``, subclassing) get inert placeholders. Once the
imports are done, :func:`active` removes the placeholder modules from ``sys.modules`` and
*seals* them: any later use raises :class:`StandInUsed`, so a measured path that did need one
of these packages fails loudly instead of measuring something else.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

NAMES = ("av", "datasets", "pandas", "pyarrow")

_sealed = False
_used: set[str] = set()  # top-level names that were replaced during the last active() block


class StandInUsed(RuntimeError):
    """Code outside the import step used a package that is only a stand-in here."""


class _Placeholder:
    """Whatever a module-level statement asks of a missing package: attribute, call, item, base class."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _check(self) -> None:
        if _sealed:
            raise StandInUsed(f"{self._name} belongs to a package that is only a stand-in in this environment "
                              f"({', '.join(sorted(_used))}); the measured path must not use it")

    def __getattr__(self, attr: str) -> _Placeholder:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        self._check()
        return _Placeholder(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> _Placeholder:
        self._check()
        return _Placeholder(f"{self._name}()")

    def __getitem__(self, key: object) -> _Placeholder:
        self._check()
        return _Placeholder(f"{self._name}[...]")

    def __or__(self, other: object) -> _Placeholder:
        # Annotations such as `datasets.Features | None`, evaluated when a function is defined.
        return self

    __ror__ = __or__

    def __mro_entries__(self, bases: tuple) -> tuple:
        # `class VideoFrame(pa.ExtensionType)` at import time: derive from object instead.
        return (object,)

    def __repr__(self) -> str:
        return f"<stand-in {self._name}>"


class _StandInModule(types.ModuleType):
    def __getattr__(self, attr: str) -> _Placeholder:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(_Placeholder(self.__name__), attr)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []  # a package, so `import pyarrow.parquet` finds a stand-in too
        module.__version__ = "0+stand-in"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        top = name.partition(".")[0]
        if top not in NAMES:
            return None
        _used.add(top)
        return importlib.machinery.ModuleSpec(name, _Loader(), is_package=True)


def missing() -> list[str]:
    """The names of :data:`NAMES` that are not installed here."""
    return [n for n in NAMES if importlib.util.find_spec(n) is None]


@contextmanager
def active(force: bool = False) -> Iterator[list[str]]:
    """Stand-ins for missing :data:`NAMES` (all of them with ``force``) during the block.

    Yields the list of names that were replaced (filled in as imports happen).
    """
    global _sealed
    finder = _Finder()
    _sealed = False
    _used.clear()
    if force:
        sys.meta_path.insert(0, finder)  # ahead of the real packages
    else:
        sys.meta_path.append(finder)  # only where no real package is found
    used: list[str] = []
    try:
        yield used
    finally:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m.partition(".")[0] in _used]:
            if isinstance(sys.modules[name], _StandInModule):
                del sys.modules[name]  # a later `import pandas` fails as it would without us
        used.extend(sorted(_used))
        _sealed = True
