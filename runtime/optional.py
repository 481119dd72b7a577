"""Optional runtimes (TensorRT, ONNX Runtime's GPU build, ...) are imported on use, failing with the package to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingRuntime(ImportError):
    """An optional runtime is not installed (or not usable). ``package`` is what to ``pip install``.

    An ImportError, so generic code still sees an import failure; the CLI
    prints it as one line naming the package instead of a traceback.
    """

    def __init__(self, what: str, package: str, detail: str = "", *, broken: str = "") -> None:
        self.what, self.package, self.detail = what, package, detail
        state = f"is installed but cannot be imported ({broken}); reinstall it" if broken else "is not installed"
        message = f"{what} {state}: pip install {package}"
        super().__init__(f"{message} ({detail})" if detail else message, name=what)


def import_optional(module: str, package: str, *, display: str | None = None, detail: str = "") -> ModuleType:
    """``import module``, or `MissingRuntime` naming ``package`` (``display``: the runtime's usual name)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name != module and not module.startswith(exc.name + "."):
            # The module is there but one of its own imports failed: a broken install; say which import.
            raise MissingRuntime(display or module, package, detail, broken=str(exc)) from None
        raise MissingRuntime(display or module, package, detail) from None
