"""What a classifier learned: per-class metrics (``metrics``), their files and pictures (``report``,
``plots``), Grad-CAM (``gradcam``) and calibration (``calibration``). Nothing imports matplotlib or MindSpore
at import time."""
