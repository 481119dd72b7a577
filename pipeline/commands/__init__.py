"""Sub-commands of the ``spos`` CLI, one module each."""


def set_torch_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None: torch's own choice), refusing a count below 1 by name."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    from spos.cpu_threads import pin_threads

    pin_threads(threads)  # the user's count: the loops' thread governor leaves it alone
