"""Errors meant for the user: one line, no traceback, a chosen exit code."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing package, wrong place).

    The CLI prints ``flowtui: <message>`` on one line and exits with ``code``.
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        # one line, whatever the cause carried
        return " ".join(super().__str__().split())
