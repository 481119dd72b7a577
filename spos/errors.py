"""Library errors that carry their remedy as a key, so each front end words it with its own options.

Library code names no command-line flags (``--resume`` means nothing to a
caller of `spos.search.run_search`); it raises `HintedError` with a ``hint``
key, and the ``spos`` CLI (pipeline/cli.py) appends the advice in its flags.
"""

from __future__ import annotations

# hint key -> what it means, for front ends; pipeline/cli.py words each with its flags.
HINTS = {
    "resume": "the output folder holds an unfinished run of the same request: continue it, or write elsewhere",
    "other_out": "the output folder holds a run of another request: write elsewhere, or repeat the original request",
    "other_out_or_delete": "the output file was made with other settings: write elsewhere, or delete it",
    "reprofile_same_out": "the LUT is incomplete: profile again into the same file to finish it",
    "device_cuda": "the runtime runs on the GPU only: ask for device 'cuda'",
    "device_match": "the execution provider runs on another device: ask for the device it runs on",
    "pick_budget": "a search result of several budgets: name the budget whose best arch is meant",
    "lut_moved": "the LUT file a search result names is not where it was: give the LUT's file",
}


class HintedError(ValueError):
    """Bad input the caller can fix; ``hint`` (a key of `HINTS`) says how, without naming any front end's options.

    ``str(error)`` is the message alone, so library callers see no CLI words.
    """

    def __init__(self, message: str, hint: str) -> None:
        if hint not in HINTS:
            raise ValueError(f"unknown error hint {hint!r}; expected one of: {', '.join(HINTS)}")
        super().__init__(message)
        self.hint = hint
