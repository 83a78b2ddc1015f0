"""The user-facing error of the preprocessing."""

from __future__ import annotations


class PreprocessingError(ValueError):
    """An input the preprocessing cannot use; the message names the case, the file and the problem."""

    def __init__(self, problem: str, case: str | None = None, file: object | None = None) -> None:
        self.case = case
        self.file = None if file is None else str(file)
        self.problem = problem
        where = ", ".join(part for part in (f"case {case}" if case else "", self.file or "") if part)
        super().__init__(f"{where}: {problem}" if where else problem)

    def with_case(self, case: str) -> PreprocessingError:
        """The same error, naming ``case`` when it did not yet."""
        return self if self.case else PreprocessingError(self.problem, case=case, file=self.file)
