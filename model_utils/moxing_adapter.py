"""Huawei ModelArts: OBS <-> local sync with moxing (imported only with ``enable_modelarts``; a missing one is a
ConfigError), a once-per-server dataset unzip, and the config's paths placed in ModelArts' local folders. Work
done once per server is done by its first device (``DEVICE_ID % min(RANK_SIZE, 8) == 0``); the others wait for the
lock file it writes ("ok" or "failed: ..."), named by the job id and the paths.
"""
import functools
import hashlib
import os
import sys
import tempfile
import time
import zipfile

from src.config import launch_env
from src.errors import ConfigError
from src.utils.fileio import write_text_atomic

LOCK_DIR = None          # directory of the lock files; None: tempfile.gettempdir()
POLL_INTERVAL = 1.0      # seconds between lock-file checks of the waiting processes
WAIT_TIMEOUT = 4 * 3600  # seconds a waiting process waits before giving up
DEVICES_PER_SERVER = 8


class ModelArtsError(RuntimeError):
    """A ModelArts synchronisation step failed or timed out."""


_log = functools.partial(print, flush=True)


def get_job_id():
    """JOB_ID, or "default" when it is unset or empty."""
    return os.environ.get("JOB_ID", "").strip() or "default"


def is_server_leader(device_id=None, device_num=None):
    """True for the process that does the once-per-server work (the first device of a server)."""
    env = launch_env()
    device_id = env.get("DEVICE_ID", 0) if device_id is None else int(device_id)
    device_num = env.get("RANK_SIZE", 1) if device_num is None else int(device_num)
    return device_id % max(1, min(device_num, DEVICES_PER_SERVER)) == 0


def _import_moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ConfigError(f"enable_modelarts is true but the 'moxing' package cannot be imported ({e}); moxing is "
                          "only available on Huawei ModelArts. Set --enable_modelarts=False to run locally.") from None
    return moxing


def _lock_path(kind, *parts):
    digest = hashlib.sha1("\0".join([get_job_id()] + [str(p) for p in parts]).encode("utf-8")).hexdigest()
    return os.path.join(LOCK_DIR or tempfile.gettempdir(), f"cspdarknet53_{kind}_{digest[:16]}.lock")


def run_once_per_server(lock_path, action, is_leader, what, timeout=None):
    """Runs ``action()`` in the leader, the others wait for it (``ModelArtsError`` if it failed, or after
    ``timeout``). True if this process ran it, False if it was done already or by the leader."""
    def status():
        try:
            with open(lock_path, encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    if is_leader:
        if (status() or "").startswith("ok"):
            return False
        try:
            action()
        except BaseException as e:
            write_text_atomic(f"failed: {type(e).__name__}: {e}\n", lock_path)
            raise
        write_text_atomic("ok\n", lock_path)
        return True
    timeout = WAIT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while (state := status()) is None:
        if time.monotonic() >= deadline:
            raise ModelArtsError(f"timed out after {timeout:.0f} s waiting for {what} (lock file {lock_path})")
        time.sleep(POLL_INTERVAL)
    if not state.startswith("ok"):
        raise ModelArtsError(f"{what} failed on the first device of this server: {state.removeprefix('failed: ')}")
    return False


def sync_data(from_path, to_path, device_id=None, device_num=None, timeout=None):
    """Copies ``from_path`` to ``to_path`` with moxing.file.copy_parallel, once per server and job."""
    mox = _import_moxing()

    def copy():
        start = time.time()
        mox.file.copy_parallel(from_path, to_path)
        _log(f"moxing: copied {from_path} -> {to_path} in {time.time() - start:.1f} s")

    return run_once_per_server(_lock_path("copy", from_path, to_path), copy,
                               is_server_leader(device_id, device_num), f"copy {from_path} -> {to_path}",
                               timeout=timeout)


def _extract(zip_path, dest, log):
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos, start = zf.infolist(), time.time()
            log(f"unzip: extracting {len(infos)} entries of {zip_path} into {dest}")
            for i, info in enumerate(infos, 1):
                zf.extract(info, dest)  # zipfile drops absolute paths and '..' components
                if i * 10 // len(infos) > (i - 1) * 10 // len(infos):  # every 10%
                    log(f"unzip: {i * 100 // len(infos)}% ({i}/{len(infos)}, {time.time() - start:.1f} s)")
    except zipfile.BadZipFile as e:
        raise ConfigError(f"not a valid zip file: {zip_path} ({e})") from None


def modelarts_unzip(zip_path, dest, extracted_name=None, device_id=None, device_num=None, timeout=None, log=_log):
    """Extracts ``zip_path`` into ``dest`` once per server; returns ``dest/<extracted_name>`` (default: the zip's
    base name), kept as is if it exists."""
    zip_path, dest = os.path.abspath(os.fspath(zip_path)), os.path.abspath(os.fspath(dest))
    target = os.path.join(dest, extracted_name or os.path.splitext(os.path.basename(zip_path))[0])

    def unzip():
        if os.path.isdir(target):
            log(f"unzip: {target} already exists, not extracting {zip_path}")
        elif not os.path.isfile(zip_path):
            raise ConfigError(f"dataset zip file not found: {zip_path} (and {target} does not exist)")
        else:
            os.makedirs(dest, exist_ok=True)
            _extract(zip_path, dest, log)

    run_once_per_server(_lock_path("unzip", zip_path, dest), unzip, is_server_leader(device_id, device_num),
                        f"unzip {zip_path}", timeout=timeout)
    return target


# path keys by the folder they are relative to on ModelArts
DATA_KEYS = ("data_dir", "val_data_dir", "data_list")               # the downloaded (unzipped) dataset
WEIGHT_KEYS = ("pretrained", "ckpt_file", "resume")                 # load_path (the checkpoint_url download)
OUTPUT_KEYS = ("ckpt_path", "log_path", "result_file", "file_name")  # output_path (uploaded to train_url)


def localize_paths(cfg, dataset_root):
    """The config with every relative path key inside its ModelArts folder: data keys in ``dataset_root`` (which an
    empty data_dir and data_list become), weights in load_path, outputs in output_path."""
    flat, ma = cfg.flat(), cfg.modelarts
    roots = {**({k: dataset_root for k in DATA_KEYS} if dataset_root else {}),
             **{k: ma.load_path for k in WEIGHT_KEYS}, **{k: ma.output_path for k in OUTPUT_KEYS}}
    changes = {k: os.path.join(root, flat[k]) for k, root in roots.items() if flat[k] and not os.path.isabs(flat[k])}
    if dataset_root and not flat["data_dir"] and not flat["data_list"]:
        changes["data_dir"] = dataset_root
    return cfg.replace(_mark_explicit=True, **changes) if changes else cfg


def run_on_modelarts(cfg, job, uses_data=True):
    """``job(cfg)`` on ModelArts: each URL set downloaded once per server, the dataset unzipped (``uses_data``),
    the paths localized; output_path uploaded to train_url afterwards, best effort after a failure."""
    ma = cfg.modelarts
    _import_moxing()
    for url, local in ((ma.data_url, ma.data_path), (ma.checkpoint_url, ma.load_path),
                       (ma.train_url, ma.output_path)):
        if url:
            sync_data(url, local)
            if os.path.isdir(local):
                _log(f"{local}: {sorted(os.listdir(local))[:20]}")
    os.makedirs(ma.output_path, exist_ok=True)
    ok = False
    try:
        dataset_root, name = (ma.data_path if uses_data else None), ma.modelarts_dataset_unzip_name
        if uses_data and ma.need_modelarts_dataset_unzip:
            dataset_root = modelarts_unzip(os.path.join(ma.data_path, name + ".zip"), ma.data_path, name)
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
                print(f"moxing: uploading {ma.output_path} to {ma.train_url} after a failure also failed: {e}",
                      file=sys.stderr)
