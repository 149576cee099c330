"""Every error the user can cause, in one place.

A ``UserError`` means bad input (a file, a key, a value): the entry scripts print its message as one
``error:`` line and exit with status 2 (``model_utils.entry.run_entry``). The message names the file, key
or value. ``NonFiniteLoss`` is not the user's input but the run's state: train.py exits 3 on it.
"""


class UserError(ValueError):
    """Bad input the user can fix; the message names the file, key or value."""


class ConfigError(UserError):
    """A config key, value, YAML file or command-line option."""


class DatasetError(UserError):
    """The user's data or data options; the message names the path or value."""


class ClassIndexError(DatasetError):
    """The data's classes do not match the model's; the message names the folders that differ."""


class BalanceError(DatasetError):
    """A bad class_weights option or weights file."""


class ClassNamesError(UserError):
    """A class-name source is missing or malformed."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the network; the message names the file."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions); the message names the path and free space."""


class DeviceError(UserError):
    """The requested device is not usable here; the message says what is available."""


class DistributedInitError(UserError):
    """``init()`` failed: not launched by msrun or a rank table."""


class ExportError(UserError):
    """An export request that cannot be carried out (the message says why and what to do)."""


class ModelRecordError(UserError):
    """An exported model's record (ONNX metadata or sidecar JSON) or calibration record is missing or malformed."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite (exit status 3): the message names the step, lr and last checkpoint."""


class Stopped(BaseException):
    """The job was stopped by a signal (SIGTERM from a scheduler before preemption, SIGINT from Ctrl-C): the
    entry scripts exit with 128 + the signal number (143, 130) and the message says what was kept.

    A ``BaseException``, as ``KeyboardInterrupt``: it is raised wherever the signal lands, and an ``except
    Exception`` on the way (a library's fallback: ``importlib.metadata`` lookups, decoder probes) must not
    swallow it (measured: a SIGTERM during the data check was lost and the run trained to its end, exit 0)."""

    def __init__(self, signum, message=""):
        import signal

        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        name = signal.Signals(self.signum).name
        super().__init__(message or f"stopped by {name} before finishing; nothing was written")
