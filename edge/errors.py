"""One exception type for every problem the user can fix; the CLI prints it as one line."""


class EdgeError(Exception):
    """Bad input or a missing dependency: shown to the user as one line, exit status 2."""


def first_line(exc: BaseException) -> str:
    """An exception's first non-empty message line (its type name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
