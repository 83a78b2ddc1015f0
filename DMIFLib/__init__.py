"""DMIFLib: the Qt-free core of the DMIF 3D Slicer extension (DMIF-Net glioma marker prediction).

Shared by the DMIFPredict / DMIFTrain modules and by headless runs (``dmif`` command, ``python -m DMIFLib``).
Only ``DMIFLib.mrml`` imports ``slicer``; nothing here imports qt, ctk or slicer.app.
"""

__version__ = "0.1.0"
