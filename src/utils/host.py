"""What this host offers the process: the cores it may run on and the CPU's feature flags."""
import os


def available_cpus():
    """Cores this process may run on (the affinity mask, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_flags():
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty set off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()
