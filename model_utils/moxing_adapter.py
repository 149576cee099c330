"""Huawei ModelArts support: OBS <-> local sync with moxing, once-per-server unzip.

``moxing`` exists only on ModelArts. It is imported inside the functions that need it, and only
when ``enable_modelarts`` is true; a missing moxing raises ConfigError saying so.

Work that must happen once per server (copying from OBS, unzipping the dataset) is done by the
first device of each server (``device_id % min(device_num, 8) == 0``); the other processes wait
for a lock file that the first one writes when it is done ("ok") or has failed ("failed: ...").
Lock names include the job id and the paths, so a second job in the same container does not see
the locks of the first.
"""

import hashlib
import os
import sys
import tempfile
import time
import zipfile

from src.errors import ConfigError
# The device, rank and device-count readers are the same environment variables as in local runs.
from model_utils.local_adapter import get_device_id, get_device_num, get_rank_id

__all__ = [
    "ModelArtsError", "get_device_id", "get_device_num", "get_rank_id", "get_job_id",
    "is_server_leader", "run_once_per_server", "sync_data", "modelarts_unzip",
    "unzip_modelarts_dataset", "localize_paths", "run_on_modelarts",
]

LOCK_DIR = None          # directory of the lock files; None: tempfile.gettempdir()
POLL_INTERVAL = 1.0      # seconds between lock-file checks of the waiting processes
WAIT_TIMEOUT = 4 * 3600  # seconds a waiting process waits before giving up
DEVICES_PER_SERVER = 8


class ModelArtsError(RuntimeError):
    """A ModelArts synchronisation step failed or timed out."""


def _log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------- environment
def get_job_id(environ=None):
    """JOB_ID, or "default" when it is unset or empty."""
    env = os.environ if environ is None else environ
    job = str(env.get("JOB_ID") or "").strip()
    return job or "default"


def is_server_leader(device_id=None, device_num=None):
    """True for the process that does the once-per-server work (the first device of a server)."""
    device_id = get_device_id() if device_id is None else int(device_id)
    device_num = get_device_num() if device_num is None else int(device_num)
    per_server = max(1, min(device_num, DEVICES_PER_SERVER))
    return device_id % per_server == 0


def _import_moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ConfigError(
            "enable_modelarts is true but the 'moxing' package cannot be imported (%s); moxing is "
            "only available on Huawei ModelArts. Set --enable_modelarts=False to run locally." % e
        ) from None
    return moxing


# --------------------------------------------------------------------------- once per server
def _lock_path(kind, *parts):
    digest = hashlib.sha1("\0".join([get_job_id()] + [str(p) for p in parts]).encode("utf-8"))
    return os.path.join(LOCK_DIR or tempfile.gettempdir(),
                        "cspdarknet53_%s_%s.lock" % (kind, digest.hexdigest()[:16]))


def _write_atomic(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _read(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def run_once_per_server(lock_path, action, is_leader, what, timeout=None, poll_interval=None):
    """Run ``action()`` in the leader; make the other processes wait for it.

    Returns True if this process ran the action, False if it was already done (or done by the
    leader). The leader re-raises the action's error after recording it in the lock file; the
    waiters then raise ModelArtsError. A waiter gives up after ``timeout`` seconds.
    """
    timeout = WAIT_TIMEOUT if timeout is None else timeout
    poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
    if is_leader:
        if os.path.exists(lock_path) and _read(lock_path).startswith("ok"):
            return False
        try:
            action()
        except BaseException as e:
            _write_atomic(lock_path, "failed: %s: %s\n" % (type(e).__name__, e))
            raise
        _write_atomic(lock_path, "ok\n")
        return True
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(lock_path):
            status = _read(lock_path).strip()
            if status.startswith("ok"):
                return False
            raise ModelArtsError("%s failed on the first device of this server: %s"
                                 % (what, status[len("failed: "):] or status))
        if time.monotonic() >= deadline:
            raise ModelArtsError("timed out after %.0f s waiting for %s (lock file %s)"
                                 % (timeout, what, lock_path))
        time.sleep(poll_interval)


def sync_data(from_path, to_path, device_id=None, device_num=None, timeout=None):
    """Copy ``from_path`` to ``to_path`` with moxing.file.copy_parallel, once per server and job."""
    mox = _import_moxing()
    leader = is_server_leader(device_id, device_num)

    def copy():
        start = time.time()
        _log("moxing: copying %s -> %s" % (from_path, to_path))
        mox.file.copy_parallel(from_path, to_path)
        _log("moxing: copied %s -> %s in %.1f s" % (from_path, to_path, time.time() - start))

    return run_once_per_server(_lock_path("copy", from_path, to_path), copy, leader,
                               "copy %s -> %s" % (from_path, to_path), timeout=timeout)


# --------------------------------------------------------------------------- unzip
def _extract(zip_path, dest, log):
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            total = len(infos)
            log("unzip: extracting %d entries of %s into %s" % (total, zip_path, dest))
            start = time.time()
            next_pct = 10
            for i, info in enumerate(infos, 1):
                zf.extract(info, dest)  # zipfile drops absolute paths and '..' components
                pct = i * 100 // max(total, 1)
                if pct >= next_pct:
                    log("unzip: %d%% (%d/%d, %.1f s)" % (pct, i, total, time.time() - start))
                    next_pct = pct // 10 * 10 + 10
    except zipfile.BadZipFile as e:
        raise ConfigError("not a valid zip file: %s (%s)" % (zip_path, e)) from None


def modelarts_unzip(zip_path, dest, extracted_name=None, device_id=None, device_num=None,
                    timeout=None, log=_log):
    """Extract ``zip_path`` into ``dest`` once per server; return ``dest/<extracted_name>``.

    ``extracted_name`` (default: the zip's base name without ".zip") is the folder the archive
    holds; if it already exists under ``dest`` nothing is extracted. Only the first device of each
    server extracts; the others wait for its lock file.
    """
    zip_path = os.path.abspath(os.fspath(zip_path))
    dest = os.path.abspath(os.fspath(dest))
    if extracted_name is None:
        extracted_name = os.path.splitext(os.path.basename(zip_path))[0]
    target = os.path.join(dest, extracted_name)
    leader = is_server_leader(device_id, device_num)

    def unzip():
        if os.path.isdir(target):
            log("unzip: %s already exists, not extracting %s" % (target, zip_path))
            return
        if not os.path.isfile(zip_path):
            raise ConfigError("dataset zip file not found: %s (and %s does not exist)"
                              % (zip_path, target))
        os.makedirs(dest, exist_ok=True)
        _extract(zip_path, dest, log)

    run_once_per_server(_lock_path("unzip", zip_path, dest), unzip, leader,
                        "unzip %s" % zip_path, timeout=timeout)
    return target


def unzip_modelarts_dataset(modelarts):
    """Unzip <data_path>/<modelarts_dataset_unzip_name>.zip when ``need_modelarts_dataset_unzip`` is true
    (``modelarts``: the config's modelarts section). Returns the extracted folder or None."""
    if not modelarts.need_modelarts_dataset_unzip:
        return None
    name = modelarts.modelarts_dataset_unzip_name
    return modelarts_unzip(os.path.join(modelarts.data_path, name + ".zip"), modelarts.data_path,
                           extracted_name=name)


# Keys holding paths, by what they are relative to on ModelArts.
DATA_KEYS = ("data_dir", "val_data_dir", "data_list")               # the downloaded (unzipped) dataset
WEIGHT_KEYS = ("pretrained", "ckpt_file", "resume")                 # load_path (the checkpoint_url download)
OUTPUT_KEYS = ("ckpt_path", "log_path", "result_file", "file_name")  # output_path (uploaded to train_url)


def localize_paths(cfg, dataset_root):
    """The config with every relative path key placed in its ModelArts folder: data keys inside
    ``dataset_root`` (an empty data_dir and data_list become ``dataset_root`` itself, when given), weight
    keys inside load_path, output keys inside output_path. Absolute paths stay as they are."""
    ma = cfg.modelarts
    flat = cfg.flat()
    changes = {}

    def place(key, root):
        if flat[key] and not os.path.isabs(flat[key]):
            changes[key] = os.path.join(root, flat[key])

    if dataset_root:
        for k in DATA_KEYS:
            place(k, dataset_root)
        if not flat["data_dir"] and not flat["data_list"]:
            changes["data_dir"] = dataset_root
    for k in WEIGHT_KEYS:
        place(k, ma.load_path)
    for k in OUTPUT_KEYS:
        place(k, ma.output_path)
    return cfg.replace(_mark_explicit=True, **changes) if changes else cfg


def run_on_modelarts(cfg, job, uses_data=True):
    """Runs ``job(cfg)`` on ModelArts: download, localize the paths, run, upload.

    Before the job: data_url -> data_path, checkpoint_url -> load_path, train_url -> output_path (each only
    when the URL is set; once per server), output_path created, the dataset unzipped (``uses_data``) and the
    config's paths localized (``localize_paths``). After: output_path -> train_url, also attempted (best
    effort) when the job raised. The same wrapper serves train.py, eval.py, export.py and predict.py.
    """
    ma = cfg.modelarts
    _import_moxing()
    for url, local in ((ma.data_url, ma.data_path), (ma.checkpoint_url, ma.load_path),
                       (ma.train_url, ma.output_path)):
        if url:
            sync_data(url, local)
            if os.path.isdir(local):
                _log("%s: %s" % (local, sorted(os.listdir(local))[:20]))
    os.makedirs(ma.output_path, exist_ok=True)
    ok = False
    try:
        dataset_root = (unzip_modelarts_dataset(ma) or ma.data_path) if uses_data else None
        result = job(localize_paths(cfg, dataset_root))
        ok = True
        return result
    finally:
        if ma.train_url:
            try:
                sync_data(ma.output_path, ma.train_url)
            except Exception as e:  # pylint: disable=broad-except
                if ok:
                    raise
                print("moxing: uploading %s to %s after a failure also failed: %s"
                      % (ma.output_path, ma.train_url, e), file=sys.stderr)
