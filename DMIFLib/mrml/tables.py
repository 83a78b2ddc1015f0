"""Table, plot and subject-hierarchy helpers: results become vtkMRMLTableNode / vtkMRMLPlotChartNode nodes
placed under the patient's subject item, so that they are saved and reloaded with the scene."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import slicer
import vtk

from DMIFLib.mrml.subjects import patient_of


def _column_array(name: str, values: Sequence) -> vtk.vtkAbstractArray:
    present = [v for v in values if v is not None and v != ""]
    if present and all(isinstance(v, (bool, int)) and not isinstance(v, float) for v in present) \
            and len(present) == len(values):
        array = vtk.vtkIntArray()
        convert = int
    elif present and all(isinstance(v, (int, float)) for v in present):
        array = vtk.vtkDoubleArray()
        convert = lambda v: math.nan if v is None or v == "" else float(v)  # noqa: E731
    else:
        array = vtk.vtkStringArray()
        convert = lambda v: "" if v is None else str(v)  # noqa: E731
    array.SetName(name)
    array.SetNumberOfValues(len(values))
    for index, value in enumerate(values):
        array.SetValue(index, convert(value))
    return array


def table_from_columns(scene: slicer.vtkMRMLScene, name: str, columns: Mapping[str, Sequence],
                       node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """Fill ``node`` (or a new table node) with ``columns`` (name -> values, all of one length).

    Integer columns become vtkIntArray, numeric ones vtkDoubleArray (missing = NaN), others vtkStringArray.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"table '{name}': columns have different lengths {sorted(lengths)}")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = vtk.vtkTable()
    for column, values in columns.items():
        table.AddColumn(_column_array(column, list(values)))
    with slicer.util.NodeModify(node):
        node.SetAndObserveTable(table)
        node.SetUseColumnTitleAsColumnHeader(True)
    return node


def table_from_rows(scene: slicer.vtkMRMLScene, name: str, rows: Sequence[Mapping], columns: Sequence[str],
                    node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """Like :func:`table_from_columns`, from a list of row dicts (missing keys are empty)."""
    return table_from_columns(scene, name, {c: [row.get(c) for row in rows] for c in columns}, node)


def table_columns(node: slicer.vtkMRMLTableNode) -> dict[str, list]:
    """The table's columns as name -> list of values (numbers for numeric columns, str otherwise)."""
    table = node.GetTable()
    out: dict[str, list] = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        if isinstance(array, vtk.vtkStringArray):
            out[array.GetName()] = [array.GetValue(r) for r in range(array.GetNumberOfValues())]
        else:
            out[array.GetName()] = [array.GetValue(r) for r in range(array.GetNumberOfTuples())]
    return out


def patient_item(scene: slicer.vtkMRMLScene, patient_name: str,
                 reference_node: slicer.vtkMRMLNode | None = None) -> int:
    """The subject-hierarchy item of the patient: the subject that holds ``reference_node`` (e.g. the T1C volume,
    as after DICOM import), else a subject named ``patient_name`` (created when missing)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if reference_node is not None and (item := patient_of(scene, reference_node)):
        return item
    item = sh.GetItemChildWithName(sh.GetSceneItemID(), patient_name)
    if not item or sh.GetItemLevel(item) != "Patient":
        item = sh.CreateSubjectItem(sh.GetSceneItemID(), patient_name)
    return item


def place_under(scene: slicer.vtkMRMLScene, parent_item: int, nodes: Sequence[slicer.vtkMRMLNode]) -> None:
    """Move (or add) the nodes' subject-hierarchy items under ``parent_item``."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, parent_item)
        else:
            sh.CreateItem(parent_item, node)


def plot_chart(scene: slicer.vtkMRMLScene, name: str, table: slicer.vtkMRMLTableNode, x_column: str,
               y_columns: Sequence[str], x_title: str, y_title: str,
               chart: slicer.vtkMRMLPlotChartNode | None = None) -> slicer.vtkMRMLPlotChartNode:
    """A line chart of ``y_columns`` against ``x_column`` of ``table`` (one plot series per y column)."""
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.RemoveAllPlotSeriesNodeIDs()
    palette = ((0.2, 0.4, 0.8), (0.85, 0.3, 0.2), (0.2, 0.65, 0.3), (0.6, 0.4, 0.7), (0.5, 0.5, 0.5))
    for index, column in enumerate(y_columns):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x_column)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetColor(*palette[index % len(palette)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    return chart
