"""Shared pytest setup: repo root on sys.path, quiet MindSpore, CPU device, PyNative by default."""
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # before the first mindspore import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mindspore as ms  # noqa: E402

ms.set_device("CPU")
ms.set_context(mode=ms.PYNATIVE_MODE)
