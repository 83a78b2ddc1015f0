"""Consistency of the Slicer extension's files (no Slicer needed): widgets used by the modules exist in their
.ui with a fitting class, parameter names match the parameter nodes, and every file is listed in CMake."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("DMIFPredict", "DMIFTrain")

# widget-name suffix -> Qt classes that fit it
SUFFIX_CLASSES = {
    "Selector": {"qMRMLNodeComboBox"},
    "CollapsibleButton": {"ctkCollapsibleButton"},
    "Button": {"QPushButton", "QToolButton"},
    "CheckBox": {"QCheckBox"},
    "ComboBox": {"QComboBox", "ctkComboBox"},
    "LineEdit": {"ctkPathLineEdit", "QLineEdit"},
    "SpinBox": {"QSpinBox", "QDoubleSpinBox"},
    "Label": {"QLabel"},
    "ProgressBar": {"QProgressBar"},
    "TableView": {"qMRMLTableView"},
}
# attribute/method used on a widget -> classes that provide it
USAGE_CLASSES = {
    "currentNode": {"qMRMLNodeComboBox"},
    "currentPath": {"ctkPathLineEdit"},
    "checked": {"QCheckBox", "QPushButton", "ctkCollapsibleButton"},
    "setMRMLTableNode": {"qMRMLTableView"},
}


def _ui_widgets(module: str) -> dict[str, ET.Element]:
    tree = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name"): w for w in tree.iter("widget")}


def _parameter_fields(module: str) -> dict[str, str]:
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError(f"{module}.py has no @parameterNodeWrapper class")


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_widget_the_module_uses_exists_with_a_fitting_class(module):
    widgets = _ui_widgets(module)
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    used = re.findall(r"self\.ui\.(\w+)(?:\.(\w+))?", source)
    assert used, f"{module}.py uses no self.ui widgets"
    for name, member in used:
        assert name in widgets, f"{module}.py uses self.ui.{name}, which is not in {module}.ui"
        cls = widgets[name].get("class")
        suffix = next((s for s in SUFFIX_CLASSES if name.lower().endswith(s.lower())), None)
        assert suffix is not None, f"self.ui.{name}: name has no known widget suffix"
        assert cls in SUFFIX_CLASSES[suffix], f"self.ui.{name} is a {cls}, expected one of {SUFFIX_CLASSES[suffix]}"
        if member in USAGE_CLASSES:
            assert cls in USAGE_CLASSES[member], f"self.ui.{name}.{member} needs {USAGE_CLASSES[member]}, got {cls}"


@pytest.mark.parametrize("module", MODULES)
def test_slicer_parameter_names_match_the_parameter_node(module):
    fields = _parameter_fields(module)
    widgets = _ui_widgets(module)
    bound = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = (name, widget.get("class"))
    assert bound, f"{module}.ui binds no widget to the parameter node"
    for parameter, (name, cls) in bound.items():
        assert parameter in fields, f"{module}.ui: {name} is bound to '{parameter}', not a parameter of the node"
        annotation = fields[parameter]
        base = re.sub(r"^Annotated\[(\w+(?:\.\w+)?),.*\]$", r"\1", annotation)
        # the widget/type pairs that slicer.parameterNodeWrapper's GUI connectors accept
        if annotation.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox", f"{name} ({cls}) cannot hold the node parameter '{parameter}'"
            node_types = [s.text for s in widgets[name].iter("string") if s.text and s.text.startswith("vtkMRML")]
            assert annotation in node_types, f"{name} lists {node_types}, parameter '{parameter}' is {annotation}"
        elif "Choice(" in annotation:
            assert cls == "QComboBox", f"{name} ({cls}) cannot hold the choice parameter '{parameter}'"
        else:
            accepted = {"bool": {"QCheckBox", "QPushButton"}, "int": {"QSpinBox", "QSlider"},
                        "float": {"QDoubleSpinBox", "ctkSliderWidget"}, "str": {"QLineEdit", "QTextEdit"},
                        "Path": {"ctkPathLineEdit", "ctkDirectoryButton"}}[base]
            assert cls in accepted, f"{name} ({cls}) cannot hold '{parameter}' ({annotation}); use one of {accepted}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_declares_its_custom_widgets_and_scene_connections(module):
    tree = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    used = {w.get("class") for w in tree.iter("widget")}
    custom = {c for c in used if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"{module}.ui uses undeclared custom widgets {custom - declared}"
    receivers = {c.findtext("receiver") for c in tree.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    needs_scene = {w.get("name") for w in tree.iter("widget")
                   if w.get("class") in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert needs_scene <= receivers, f"{module}.ui: no scene connection for {needs_scene - receivers}"


def _cmake_listed(module: str) -> set[str]:
    text = (ROOT / module / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", module)
    assert f"set(MODULE_NAME {module})" in text
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT" in text
    return set(re.findall(r"^\s+([\w./-]+\.\w+)\s*$", text, flags=re.MULTILINE))


@pytest.mark.parametrize("module", MODULES)
def test_every_module_file_and_resource_is_listed_in_cmake(module):
    listed = _cmake_listed(module)
    folder = ROOT / module
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"}
    assert present - listed == set(), f"{module}: files not in CMakeLists.txt: {sorted(present - listed)}"
    assert listed - present == set(), f"{module}: CMakeLists.txt lists missing files: {sorted(listed - present)}"
    for resource in (p for p in present if p.startswith("Resources/")):
        assert Path(resource).name.startswith(module), f"{module}: resource {resource} is not prefixed by the module"


def test_extension_cmake_metadata_modules_and_library():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), f"{key} missing or empty"
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
    assert "DMIFLib/*.py" in text and "DMIFLib/requirements.txt" in text and "DMIFBatch.py" in text
    assert (ROOT / "DMIFBatch.py").is_file()
    icon = re.search(r"Resources/Icons/[\w.]+\.png", text).group(0)
    assert (ROOT / icon).is_file(), f"the extension icon {icon} is missing"


def test_icons_are_real_images():
    image = pytest.importorskip("PIL.Image")
    for path in [ROOT / "Resources" / "Icons" / "DMIF.png"] + [ROOT / m / "Resources" / "Icons" / f"{m}.png"
                                                                 for m in MODULES]:
        with image.open(path) as icon:
            assert icon.format == "PNG" and min(icon.size) >= 64, f"{path}: {icon.format} {icon.size}"
            import numpy as np

            colours = np.unique(np.asarray(icon.convert("RGB")).reshape(-1, 3), axis=0)
            assert len(colours) > 16, f"{path} is a flat placeholder"


def test_predict_panel_has_a_bound_volume_selector_per_known_modality():
    """DMIF Predict shows the selectors of the loaded model's modalities (by name: <key>Selector, <key>Label) and
    reads the parameter <key>Volume; every modality key a model file may list needs all three."""
    import sys

    sys.path.insert(0, str(ROOT / "DMIFPredict"))
    from DMIFPredictLib.logic import MODALITY_TITLES, VOLUME_MODALITIES

    from DMIFLib.cohort import MODALITIES

    assert set(MODALITIES) <= set(VOLUME_MODALITIES) == set(MODALITY_TITLES)
    widgets = _ui_widgets("DMIFPredict")
    fields = _parameter_fields("DMIFPredict")
    for modality in VOLUME_MODALITIES:
        selector = widgets[f"{modality}Selector"]
        assert selector.get("class") == "qMRMLNodeComboBox" and f"{modality}Label" in widgets
        bound = [p.find("string").text for p in selector.findall("property") if p.get("name") == "SlicerParameterName"]
        assert bound == [f"{modality}Volume"] and fields[f"{modality}Volume"] == "vtkMRMLScalarVolumeNode"
        none_enabled = [p.find("bool").text for p in selector.findall("property") if p.get("name") == "noneEnabled"]
        assert none_enabled == ["true"], f"{modality}Selector must allow None (hidden when the model lacks it)"


@pytest.mark.parametrize("module", MODULES)
def test_path_widgets_are_not_bound_by_connect_gui(module):
    """ctkPathLineEdit emits currentPathChanged only for text its filter accepts (CTK ctkPathLineEdit.cpp), so
    connectGui would miss a cleared path: the modules keep their paths (str parameters) in sync by hand."""
    fields = _parameter_fields(module)
    for name, widget in _ui_widgets(module).items():
        if widget.get("class") == "ctkPathLineEdit":
            assert not [p for p in widget.findall("property") if p.get("name") == "SlicerParameterName"], name
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    for parameter in ("modelPath",) if module == "DMIFPredict" else ("cohortPath", "outputFolder"):
        assert fields[parameter] == "str"
    assert source.count('connect("validInputChanged(bool)"') >= 1 and "addCurrentPathToHistory()" in source
