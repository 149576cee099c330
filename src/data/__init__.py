"""The data package: listing (``listing``), file checks (``checks``: the cheap one; ``verify``: the full decode
check in worker processes, with its manifest), the data options (``options``), transforms (``transforms``), the
train samplers (``sampler``, ``balance``), readers (``reader``: files; ``mindrecord``: a MindRecord prefix), the
pipeline (``pipeline.create_dataset``: a reader, then the shared tail), the MindRecord converter (``convert``),
the label check (``class_check``), the embedded demo data (``demo``) and class names (``class_names``).
Importing it imports no MindSpore.
"""
from src.errors import DatasetError
from src.data.listing import IMAGE_EXTENSIONS, load_class_index, save_class_index
from src.data.pipeline import DatasetBundle, create_dataset

__all__ = ["DatasetError", "IMAGE_EXTENSIONS", "load_class_index", "save_class_index", "DatasetBundle",
           "create_dataset"]
