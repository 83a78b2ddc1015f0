"""DMIFTrain's Qt-free logic: the training worker process (``process``) and the MRML results (``logic``)."""
