"""The data package (see each module's docstring); importing it imports no MindSpore."""
from src.errors import DatasetError
from src.data.listing import IMAGE_EXTENSIONS, load_class_index, save_class_index
from src.data.pipeline import DatasetBundle, create_dataset

__all__ = ["DatasetError", "IMAGE_EXTENSIONS", "load_class_index", "save_class_index", "DatasetBundle",
           "create_dataset"]
