"""The user-facing error of training (bad run folder, incompatible checkpoint, unusable cohort split)."""


class TrainingError(ValueError):
    """A training run that cannot start or resume; the message names the folder or file and the problem."""


class RunCancelledError(Exception):
    """A long run (training, cohort prediction) stopped because its ``cancel`` event was set."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message is meant for the user (the CLI prints them on one line and exits 2)."""
    from DMIFLib.cohort import CohortError
    from DMIFLib.model_file import ModelFileError
    from DMIFLib.preprocessing.errors import PreprocessingError

    return (CohortError, PreprocessingError, ModelFileError, TrainingError)
