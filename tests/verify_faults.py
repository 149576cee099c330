"""A decoder for ``verify_images(decoder="tests.verify_faults:check")`` that misbehaves on purpose, chosen
by the file name: ``segv`` (SIGSEGV), ``abort`` (SIGABRT), ``fpe`` (SIGFPE), ``exit`` (exit status 3),
``hang`` (sleeps), ``noisy`` (prints to stderr like libjpeg, then decodes), ``raise`` (a Python error),
``victim`` (crashes only when a ``poison`` file was decoded before in the same process);
any other file gets the real cheap check. Not a test module."""
import os
import signal
import time


_poisoned = []


def check(path):
    name = os.path.basename(path)
    if "poison" in name:   # leaves the "decoder" in a bad state, as some corrupt JPEGs leave libjpeg
        _poisoned.append(name)
        os.write(2, b"Corrupt JPEG data: premature end of data segment\n")
    if "victim" in name and _poisoned:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "segv" in name:
        os.write(2, b"about to crash\n")
        os.kill(os.getpid(), signal.SIGSEGV)
    if "abort" in name:
        os.abort()
    if "fpe" in name:
        os.kill(os.getpid(), signal.SIGFPE)
    if "exit" in name:
        os._exit(3)
    if "hang" in name:
        time.sleep(600)
    if "raise" in name:
        raise MemoryError("boom")
    if "noisy" in name:
        os.write(2, b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n")
    from src.data.checks import check_image_file
    return check_image_file(path)
