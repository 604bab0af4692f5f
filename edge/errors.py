"""One exception type for every problem the user can fix; the CLI prints it as one line."""


class EdgeError(Exception):
    """Bad input or a missing dependency: shown to the user as one line, exit status 2."""
