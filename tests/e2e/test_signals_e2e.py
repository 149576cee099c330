"""A real SIGTERM after MindSpore's data engine started an iterator (which installs its own handler) still
reaches src.utils.signals when the loop goes through ``signals.guarded``."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import os, signal, sys
import numpy as np
import mindspore.dataset as ds
from src.errors import Stopped
from src.utils import signals

signals.install()
data = ds.GeneratorDataset([(np.zeros(3, np.float32),)] * 8, ["x"], shuffle=False, num_parallel_workers=2,
                           python_multiprocessing=False)
data = data.map(lambda x: x, num_parallel_workers=2)  # as the project's pipelines: workers and a map
try:
    for n, _ in enumerate(signals.guarded(data.create_tuple_iterator()) if sys.argv[1] == "guarded"
                          else data.create_tuple_iterator()):
        if n == 2:
            os.kill(os.getpid(), signal.SIGTERM)
except Stopped as stop:
    print("stopped", stop.exit_status)
"""


def _run(run_script, mode):
    return run_script(None, ["-c", SCRIPT, mode], timeout=120, cwd=ROOT)


def test_guarded_loops_see_sigterm_despite_the_data_engine(run_script):
    proc = _run(run_script, "guarded")
    assert proc.returncode == 0 and "stopped 143" in proc.stdout, proc.stdout + proc.stderr
    # without the guard the engine's handler takes the signal: the process ends without our Stopped
    bare = _run(run_script, "bare")
    assert "stopped" not in bare.stdout
