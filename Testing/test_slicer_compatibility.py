"""What 3D Slicer 5.10/5.12 and the Extensions Index require of the extension, checked without a Slicer binary.

The facts below were read from the real sources (see docs/slicer.md for the commits):
- Slicer v5.10.0 (a2b6d082) and v5.12.3 (9034c71a): the SuperBuild files that fix the bundled Python packages;
  the scripted-module factory loads every top-level .py in qt-scripted-modules as a module; slicer.packaging
  exists only from 5.12 and is not imported at start-up.
- Slicer/ExtensionsIndex scripts/check_description_files.py (07f1d1b2): the offline checks of a catalog entry.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("DMIFPredict", "DMIFTrain")
sys.path[:0] = [str(ROOT / "DMIFPredict"), str(ROOT / "DMIFTrain")]

# Python packages Slicer bundles, parsed from its SuperBuild (the `name==version --hash` lines):
# v5.10.0 (a2b6d082be04): SuperBuild/External_python-numpy.cmake, External_python-scipy.cmake,
#   External_python-dicom-requirements.cmake (pydicom, pillow), External_python-pythonqt-requirements.cmake
#   (packaging); SimpleITK is built from source, External_SimpleITK.cmake GIT_TAG a2adada3
#   "slicer-v2.5.2-2025-06-13" with SimpleITK_BUILD_DISTRIBUTE (version 2.5.2).
# v5.12.3 (9034c71a8fce): the same files plus External_python-SimpleITK.cmake (simpleitk==2.5.5) and, in
#   External_python-dicom-requirements.cmake, highdicom==0.27.0.
SLICER_BUNDLED = {
    "5.10.0": {"numpy": "2.0.2", "scipy": "1.13.1", "SimpleITK": "2.5.2", "pydicom": "2.4.4", "pillow": "11.2.1",
               "packaging": "25.0"},
    "5.12.3": {"numpy": "2.4.6", "scipy": "1.17.1", "SimpleITK": "2.5.5", "pydicom": "3.0.2", "pillow": "12.2.0",
               "packaging": "26.2", "highdicom": "0.27.0"},
}

# Slicer/ExtensionsIndex scripts/check_description_files.py at 07f1d1b2781c (ACCEPTED_EXTENSION_CATEGORIES).
ACCEPTED_EXTENSION_CATEGORIES = [
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform", "Conda",
    "Converters", "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter", "FTV Segmentation",
    "Filtering", "Filtering.Morphology", "Filtering.Vesselness", "Holographic Display", "Image Synthesis", "IGT",
    "Informatics", "Netstim", "Neuroimaging", "Nuclear Medicine", "Orthodontics", "Osteotomy Planning",
    "Otolaryngology", "Photogrammetry", "Pipelines", "Planning", "Printing", "Quantification", "Radiotherapy",
    "Registration", "Remote", "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis",
    "Shape Regression", "Shape Visualization", "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging",
    "Supervisely", "Surface Models", "SurfaceLearner", "Tomographic Reconstruction", "Tracking", "Tractography",
    "Training", "Ultrasound", "Utilities", "Vascular Modeling Toolkit", "Virtual Reality", "VisSimTools",
    "Web System Tools", "Wizards",
]
# Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json (v5.12.3): properties and required keys.
CATALOG_SCHEMA_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                       "build_subdirectory", "enabled", "tier"}
CATALOG_REQUIRED_KEYS = {"$schema", "category", "scm_url"}
RAW_URL_PREFIX = "https://raw.githubusercontent.com/dmif-slicer/SlicerDMIF/main/"


def _python_files() -> list[Path]:
    files = [ROOT / "DMIFBatch.py"]
    for folder in ("DMIFLib", *MODULES):
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def _cmake_list(text: str, keyword: str) -> list[str]:
    """The entries of `KEYWORD a b c` inside a CMake call, up to the next upper-case keyword or ')'."""
    match = re.search(rf"\b{keyword}\b(.*?)(?=\n\s*[A-Z_]+\b|\))", text, flags=re.S)
    return match.group(1).split() if match else []


def _installed_beside_modules() -> dict[str, Path]:
    """Every .py file the CMake files install into qt-scripted-modules: {path there: source file}."""
    installed = {}
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    globs = dict(re.findall(r"file\(GLOB_RECURSE (\w+) RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\} ([\w/*.]+)\)", top))
    for call in re.findall(r"ctkMacroCompilePythonScript\((.*?)\n\s*\)", top, flags=re.S):
        assert "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in call and "NO_INSTALL_SUBDIR" in call
        for entry in _cmake_list(call, "SCRIPTS"):
            variable = re.fullmatch(r"\$\{(\w+)\}", entry)
            sources = sorted(ROOT.glob(globs[variable.group(1)].replace("*.py", "**/*.py"))) if variable \
                else [ROOT / entry]
            installed.update({p.relative_to(ROOT).as_posix(): p for p in sources})  # paths kept as in the tree
    for module in MODULES:  # slicerMacroBuildScriptedModule: paths relative to the module folder
        text = (ROOT / module / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", module)
        scripts = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", text, flags=re.S).group(1).split()
        installed.update({script: ROOT / module / script for script in scripts})
    return installed


def test_every_top_level_file_beside_the_modules_is_a_scripted_module():
    """Slicer's scripted-module factory loads each top-level .py of qt-scripted-modules as a module and looks for
    the class of the file's name; anything else there is a load error at every start-up."""
    installed = _installed_beside_modules()
    assert "DMIFLib/mrml/batch.py" in installed and "DMIFPredictLib/logic.py" in installed
    top_level = {path: source for path, source in installed.items() if "/" not in path}
    for path, source in top_level.items():
        name = Path(path).stem
        tree = ast.parse(source.read_text(encoding="utf-8"))
        classes = {node.name: [ast.unparse(b) for b in node.bases] for node in tree.body
                   if isinstance(node, ast.ClassDef)}
        assert name in classes and "ScriptedLoadableModule" in classes[name], \
            f"{path} is installed beside the modules but defines no scripted module class {name}"
    assert sorted(Path(p).stem for p in top_level) == sorted(MODULES)


def test_the_batch_script_is_installed_outside_the_module_folder():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "DMIFBatch.py" not in "".join(re.findall(r"ctkMacroCompilePythonScript\(.*?\n\s*\)", top, flags=re.S))
    assert re.search(r"install\(FILES DMIFBatch\.py DESTINATION \$\{Slicer_INSTALL_SHARE_DIR\}/DMIF ", top)


def _packaging_uses_and_imports(statements) -> tuple[bool, bool]:
    uses = imports = False
    for node in (n for statement in statements for n in ast.walk(statement)):
        uses |= isinstance(node, ast.Attribute) and ast.unparse(node) == "slicer.packaging"
        imports |= isinstance(node, ast.Import) and any(a.name == "slicer.packaging" for a in node.names)
    return uses, imports


def test_every_use_of_slicer_packaging_has_its_import():
    """slicer.packaging does not exist in Slicer 5.10 and is not imported at start-up in 5.12: a bare
    `slicer.packaging.x` after `import slicer` is an AttributeError."""
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        uses, module_imports = _packaging_uses_and_imports(top)
        assert not uses or module_imports, f"{path}: slicer.packaging used at module level without its import"
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            uses, imports = _packaging_uses_and_imports(function.body)
            assert not uses or imports or module_imports, \
                f"{path}:{function.lineno} {function.name}() uses slicer.packaging without importing it"


def _requirements() -> list[Requirement]:
    from DMIFPredictLib.dependencies import loadRequirements

    return loadRequirements(ROOT / "DMIFLib" / "requirements.txt")


@pytest.mark.parametrize("release", sorted(SLICER_BUNDLED))
def test_in_slicer_requirements_admit_the_packages_slicer_bundles(release):
    bundled = {name.lower(): version for name, version in SLICER_BUNDLED[release].items()}
    checked = 0
    for requirement in _requirements():
        version = bundled.get(requirement.name.lower())
        if version is not None:
            assert requirement.specifier.contains(version), \
                f"requirements.txt: {requirement} would replace Slicer {release}'s bundled {requirement.name} {version}"
            checked += 1
    assert checked >= 3  # numpy, scipy, SimpleITK at least


def test_requirements_admit_the_tested_pins_and_hold_bundled_packages_fixed():
    from DMIFPredictLib.dependencies import PROTECTED_PACKAGES, TORCH_REQUIREMENT

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, flags=re.S | re.M).group(1)
    pins = {}
    for line in re.findall(r'"([^"]+)"', dependencies):
        requirement = Requirement(line)
        (version,) = [s.version for s in requirement.specifier if s.operator == "=="]
        pins[requirement.name.lower()] = version
    requirements = _requirements()
    assert "torch" not in {r.name.lower() for r in requirements}, "torch must come from the PyTorch extension"
    for requirement in requirements:
        assert requirement.name.lower() in pins, f"{requirement.name} is not pinned in pyproject.toml"
        assert requirement.specifier.contains(pins[requirement.name.lower()]), \
            f"requirements.txt {requirement} excludes the version the suite tests ({pins[requirement.name.lower()]})"
    assert Requirement("torch" + TORCH_REQUIREMENT).specifier.contains(pins["torch"])
    assert pins["simpleitk"] == SLICER_BUNDLED["5.12.3"]["SimpleITK"], "dev/CI must test Slicer 5.12's SimpleITK"
    protected = {p.lower() for p in PROTECTED_PACKAGES}
    for release in SLICER_BUNDLED.values():
        in_both = {name.lower() for name in release} & {r.name.lower() for r in requirements}
        assert in_both <= protected


def test_constraints_pin_the_installed_protected_packages():
    from DMIFPredictLib.dependencies import PROTECTED_PACKAGES, constraintsText, installedVersion

    lines = constraintsText().splitlines()
    for name in PROTECTED_PACKAGES:
        version = installedVersion(name)
        assert (f"{name}=={version}" in lines) == (version is not None)
    assert all(Requirement(line).specifier for line in lines)


def test_missing_dependencies_names_the_unmet_requirement(monkeypatch):
    from DMIFPredictLib import dependencies

    assert dependencies.missingDependencies() == []  # the test environment has everything
    monkeypatch.setattr(dependencies, "TORCH_REQUIREMENT", ">=99")
    (missing,) = dependencies.missingDependencies()
    assert missing.startswith("torch>=99 (installed: ")


def test_older_slicer_gets_a_sentence_not_a_traceback():
    from DMIFPredictLib.dependencies import unsupportedSlicerMessage

    assert unsupportedSlicerMessage((5, 10)) is None and unsupportedSlicerMessage((5, 12)) is None
    assert unsupportedSlicerMessage((6, 0)) is None
    message = unsupportedSlicerMessage((5, 8))
    assert "5.10 or later" in message and "Slicer 5.8" in message


def _module_start_up_files() -> list[Path]:
    files = []
    for module in MODULES:
        files.append(ROOT / module / f"{module}.py")
        files += sorted((ROOT / module / f"{module}Lib").glob("*.py"))
    return files


@pytest.mark.parametrize("path", _module_start_up_files(), ids=lambda p: p.name)
def test_module_start_up_code_loads_on_an_old_slicer(path):
    """What Slicer imports at start-up (the module files and their ...Lib packages) must parse as Python 3.9
    (Slicer 5.8) and import no DMIFLib at module level, so that an old Slicer shows the version message."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 9))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(n.split(".")[0] == "DMIFLib" for n in names), f"{path.name}: DMIFLib imported at start-up"
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    if not future:  # annotations are evaluated: no PEP 604 unions (Python 3.10)
        for node in ast.walk(tree):
            annotation = getattr(node, "annotation", None) or getattr(node, "returns", None)
            if annotation is not None:
                assert "|" not in ast.unparse(annotation), f"{path.name}: {ast.unparse(annotation)} needs Python 3.10"


@pytest.mark.parametrize("module", MODULES)
def test_module_metadata_follows_the_slicer_5_12_template(module):
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    assert 'self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]' in source
    contributors = re.search(r"self\.parent\.contributors = \[(.*?)\]", source).group(1)
    for name in re.findall(r'"([^"]+)"', contributors):
        assert re.fullmatch(r"[^()]+ \([^()]+\)", name), f"contributor '{name}' is not 'Name (Organisation)'"
    help_text = source[source.index("self.parent.helpText"):source.index("self.parent.acknowledgementText")]
    assert "<a href=" in help_text and "DOCUMENTATION_URL" in help_text and "5.10 and 5.12" in help_text


def test_cmake_minimum_required_spans_the_templates_of_5_10_and_5_12():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    # Utilities/Templates/Extensions/Default/CMakeLists.txt: 3.20.6...3.22.6 (v5.10.0), 3.28.0...3.28.0 (v5.12.3)
    assert "cmake_minimum_required(VERSION 3.20.6...3.28.0 FATAL_ERROR)" in top


def test_catalog_entry_passes_the_extensions_index_offline_checks():
    """The offline checks of check_description_files.py: JSON format (LF only), schema keys, extension name,
    category, repository name and scm_url syntax, CMakeLists project/icon/screenshots, license, size."""
    entry_path = ROOT / "DMIF.json"
    raw = entry_path.read_bytes()
    assert b"\r" not in raw, "the catalog entry must use LF line endings"
    entry = json.loads(raw)
    assert CATALOG_REQUIRED_KEYS <= set(entry) <= CATALOG_SCHEMA_KEYS
    assert entry["category"] in ACCEPTED_EXTENSION_CATEGORIES
    assert entry["build_dependencies"] == ["PyTorch"]
    assert isinstance(entry.get("tier", 1), int) and 1 <= entry.get("tier", 1) <= 5
    name = entry_path.stem
    assert not name.lower().startswith("slicer")
    assert re.match(r"(git|https)://", entry["scm_url"])
    repository = Path(entry["scm_url"].rstrip("/")).stem
    assert repository.startswith("Slicer"), "the repository name should start with 'Slicer'"

    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.IGNORECASE)[0] == name
    assert re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1) == entry["category"]
    assert re.search(r'set\(EXTENSION_DEPENDS "([^"]+)"\)', cmake).group(1).split() == entry["build_dependencies"]
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake, re.IGNORECASE)
    screenshots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake, re.IGNORECASE)
    assert len(icons) == 1 and len(screenshots) == 1
    urls = [icons[0], *screenshots[0].split()]
    assert len(urls) >= 3
    for url in urls:  # the index downloads them; here: each raw URL is a PNG committed in this repository
        assert url.startswith(RAW_URL_PREFIX), url
        image = ROOT / url[len(RAW_URL_PREFIX):]
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{url}: no PNG at {image}"

    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if tracked.returncode == 0:
        size = sum((ROOT / p).stat().st_size for p in tracked.stdout.decode().split("\0") if (ROOT / p).is_file())
        assert size < 100 * 1024 * 1024


def test_the_screenshots_are_real_renderings():
    image = pytest.importorskip("PIL.Image")
    for name in ("DMIFPredict-box.png", "DMIFPredict-results.png"):
        with image.open(ROOT / "Resources" / "Screenshots" / name) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 400
            assert len(picture.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 256, f"{name} is flat"
