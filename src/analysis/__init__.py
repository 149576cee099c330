"""Looking at what a classifier learned: per-class metrics and the confusion matrix (``metrics``), their
pictures (``plots``), Grad-CAM heatmaps (``gradcam``) and TensorBoard scalars (``tensorboard``).

Nothing here parses config, sets up the device or imports matplotlib / tensorboardX at import time;
each module says what it needs.
"""
