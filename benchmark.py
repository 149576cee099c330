"""Speed and memory benchmark of CSPDarkNet53 on MindSpore, optionally side by side with timm/PyTorch
(``python benchmark.py --help``; the machinery is in benchmarks/: cli, runner, flops, data)."""
import os
import sys

os.environ.setdefault("GLOG_v", "3")

from benchmarks.cli import arch_list, build_parser, main, make_specs  # noqa: E402,F401  (tests use them)

if __name__ == "__main__":
    sys.exit(main())
