"""The user-facing errors of training and prediction (bad run folder, incompatible checkpoint, unusable cohort
split, unknown device)."""


class TrainingError(ValueError):
    """A training run that cannot start or resume; the message names the folder or file and the problem."""


class DeviceError(ValueError):
    """A ``--device`` that is not a device name, or names a device this machine does not have."""


class RunCancelledError(Exception):
    """A long run (training, cohort prediction) stopped because its ``cancel`` event was set."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message is meant for the user (the CLI prints them on one line and exits 2)."""
    from DMIFLib.cohort import CohortError
    from DMIFLib.methods.registry import UnknownMethodError
    from DMIFLib.model_file import ModelFileError
    from DMIFLib.preprocessing.errors import PreprocessingError

    return (CohortError, PreprocessingError, ModelFileError, TrainingError, DeviceError, UnknownMethodError)
