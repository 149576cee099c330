"""Every error the user can cause. A ``UserError`` (bad input; the message names the file, key or value) is one
``error:`` line and exit status 2 (``model_utils.entry.run_entry``); ``NonFiniteLoss`` exits 3."""


class UserError(ValueError):
    """Bad input the user can fix."""


class ConfigError(UserError):
    """A config key, value, YAML file or command-line option."""


class DatasetError(UserError):
    """The user's data or data options."""


class ClassIndexError(DatasetError):
    """The data's classes do not match the model's; the message names the folders that differ."""


class BalanceError(DatasetError):
    """A bad class_weights option or weights file."""


class ClassNamesError(UserError):
    """A class-name source is missing or malformed."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the network."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions); the message gives the free space."""


class DeviceError(UserError):
    """The requested device is not usable here; the message says what is available."""


class DistributedInitError(UserError):
    """``init()`` failed: not launched by msrun or a rank table."""


class ExportError(UserError):
    """An export request that cannot be carried out."""


class ModelRecordError(UserError):
    """An exported model's record or a calibration record is missing or malformed."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite (exit status 3)."""


class Stopped(BaseException):
    """Stopped by SIGTERM/SIGINT: exit 128 + the signal number. A ``BaseException`` so that a library's ``except
    Exception`` cannot swallow it (a SIGTERM during the data check was once lost that way)."""

    def __init__(self, signum, message=""):
        import signal

        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        super().__init__(message or f"stopped by {signal.Signals(self.signum).name} before finishing; nothing was "
                                    "written")
