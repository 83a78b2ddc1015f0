"""MRML adapter: the only part of DMIFLib that imports ``slicer``.

Works inside 3D Slicer and under the PyPI package ``slicer-core`` (real MRML nodes, no GUI, no CLI modules).
Volume nodes become SimpleITK images (RAS -> LPS), Markups ROI nodes become
:class:`DMIFLib.preprocessing.roi.OrientedBox` objects, predictions and training results become table and
plot nodes placed under the patient in the subject hierarchy.
"""
