"""The user-facing error of training (bad run folder, incompatible checkpoint, unusable cohort split)."""


class TrainingError(ValueError):
    """A training run that cannot start or resume; the message names the folder or file and the problem."""


class RunCancelledError(Exception):
    """A long run (training, cohort prediction) stopped because its ``cancel`` event was set."""
