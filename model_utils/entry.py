"""The ``main()`` every entry script shares: load the config, run ``job(cfg, run_log) -> exit status`` (on
ModelArts inside the moxing sync), and turn every error the user can cause into one ``error:`` line, exit 2."""
import errno
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ warnings bury the one-line error; before its import


def run_entry(job, argv=None, log_name="run", uses_data=True, quiet=False, script=None):
    """``job(cfg, run_log)``'s exit status for the config of ``argv`` (default ``sys.argv[1:]``); a user error is
    one ``error:`` line on stderr (and in the run's log file) and exit 2. ``script``: whose keys the command line
    takes (default: ``log_name`` if it names an entry script, else every key). ``uses_data``: ModelArts downloads
    the dataset. ``quiet``: the job prints its own results; the log shows only warnings (on stderr)."""
    import logging

    from model_utils.moxing_adapter import ModelArtsError, run_on_modelarts
    from src.config import SCRIPTS, load_config
    from src.errors import Stopped, UserError
    from src.utils import signals
    from src.utils.runtime import RunLog, user_error_exit

    signals.install()  # SIGTERM / SIGINT -> Stopped: exit 143 / 130, never 0, never a half-written result
    run_log = RunLog(log_name, console_level=logging.WARNING if quiet else logging.INFO)
    try:
        cfg = load_config(argv, script=script or (log_name if log_name in SCRIPTS else None))
        if cfg.modelarts.enable_modelarts:
            return run_on_modelarts(cfg, lambda c: job(c, run_log), uses_data=uses_data)
        return job(cfg, run_log)
    except (UserError, ModelArtsError) as err:  # bad input: the message names the file, key or value
        return user_error_exit(err, run_log)
    except Stopped as stop:
        user_error_exit(stop, run_log)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.exit_status)  # a half-imported MindSpore aborts in its exit handlers (src.utils.signals)
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        return user_error_exit(storage_error_message(err), run_log)


#: a full disk, quota, size limit, read-only or forbidden place: the environment's fault, one ``error:`` line
STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES",
                                                              "EPERM", "ENOTDIR", "EISDIR")
                           if hasattr(errno, name))


def storage_error_message(err):
    """One line for a storage ``OSError``: the path, the reason, and for a full disk the free space."""
    from src.utils.fileio import free_space

    path = err.filename or ""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG):
        folder = os.path.dirname(os.path.abspath(path)) if path else "."
        return f"cannot write {path or 'a file'}: {reason} ({free_space(folder)})"
    return f"{path}: {reason}" if path else reason
