"""DMIFTrain's Qt-free logic (importable under slicer-core, tested by pytest).

In a developer install (the module folder of this source tree added to Slicer's module paths) DMIFLib lives at
the repository root, two folders up: it is put on sys.path here. In a built extension DMIFLib is installed next
to the scripted modules and this does nothing.
"""

import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
if (_SOURCE_ROOT / "DMIFLib" / "__init__.py").is_file() and str(_SOURCE_ROOT) not in sys.path:
    sys.path.append(str(_SOURCE_ROOT))
