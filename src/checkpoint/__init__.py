"""Checkpoints: file formats and atomic saves, key layouts, the metadata writer/reader and the model a job builds,
strict loading, run folders and retention, the training state a run resumes from."""
from src.checkpoint.formats import (CheckpointError, CheckpointSaveError, is_partial_file, read_state_dict,
                                    remove_partial_files, save_checkpoint_atomic)
from src.checkpoint.layouts import HEAD_KEYS, detect_layout, timm_name_to_own, zoo_name_to_own
from src.checkpoint.metadata import (ModelSpec, checkpoint_metadata, checkpoint_model_info, read_metadata,
                                     resolve_model)
from src.checkpoint.store import (CHECKPOINT_EXTENSIONS, CKPT_PATTERN, CheckpointManager, checkpoint_files,
                                  find_resume_checkpoint, run_folder_of, training_checkpoints)
from src.checkpoint.training_state import restore_training_state, training_state_entries
from src.checkpoint.weights import LoadReport, build_inference_model, load_weights
__all__ = ["CheckpointError", "CheckpointSaveError", "is_partial_file", "read_state_dict", "remove_partial_files",
           "save_checkpoint_atomic", "HEAD_KEYS", "detect_layout", "timm_name_to_own", "zoo_name_to_own",
           "ModelSpec", "checkpoint_metadata", "checkpoint_model_info", "read_metadata",
           "resolve_model", "CHECKPOINT_EXTENSIONS", "CKPT_PATTERN", "CheckpointManager", "checkpoint_files",
           "find_resume_checkpoint", "run_folder_of", "training_checkpoints", "restore_training_state",
           "training_state_entries", "LoadReport", "build_inference_model", "load_weights"]
