"""src/sink.py's choices: the steps per sink (the largest divisor of the epoch's steps up to sink_size) and
when sink mode is on ("auto": on Ascend and GPU, off on CPU). Sink runs against loop runs:
tests/e2e/test_train_resume.py."""
import pytest


def test_sink_chunk_size_and_mode():
    from src.config import resolve_sink_mode
    from src.sink import sink_chunk_size

    assert sink_chunk_size(9, 0) == 9 and sink_chunk_size(9, 2) == 1 and sink_chunk_size(9, 3) == 3
    assert sink_chunk_size(1251, 500) == 417 and sink_chunk_size(8, 100) == 8
    assert resolve_sink_mode("auto", "Ascend") and resolve_sink_mode("auto", "GPU")
    assert not resolve_sink_mode("auto", "CPU") and resolve_sink_mode("1", "CPU") and not resolve_sink_mode("0", "GPU")
    with pytest.raises(ValueError):
        resolve_sink_mode("sometimes", "CPU")
