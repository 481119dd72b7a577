"""Sub-commands of the ``spos`` CLI, one module each."""
