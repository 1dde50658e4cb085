"""Strip notebook outputs before committing, keeping the small checked cells.

Usage: ``python tools/strip_notebooks.py notebooks/*.ipynb``

Cells marked ``# NBVAL_CHECK_OUTPUT`` keep their text outputs, because nbval compares
them; every other cell loses its outputs and execution count. Images are dropped from
checked cells too. The kernel name is set to ``python3``.
"""

from __future__ import annotations

import sys

import nbformat

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def strip(path: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.pop("papermill", None)
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if CHECK_MARK in cell.source:
            cell.outputs = [
                output
                for output in cell.outputs
                if output.output_type == "stream" and output.get("name") == "stdout"
                or (output.output_type in ("execute_result",) and "text/plain" in output.get("data", {}))
            ]
            for output in cell.outputs:
                if "data" in output:
                    output["data"] = {"text/plain": output["data"]["text/plain"]}
                    output["metadata"] = {}
        else:
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        strip(argument)
