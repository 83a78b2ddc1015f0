"""DMIFPredict's Qt-free logic (``logic``) and the GUI-side dependency installer (``dependencies``)."""
