"""notebooks/calibrate_surface.ipynb runs top to bottom (so it cannot rot), and says what it
claims: the Vogt slice is caught and the bad surface's calendar pair is named."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB = Path(__file__).resolve().parents[1] / "notebooks" / "calibrate_surface.ipynb"


@pytest.mark.slow
def test_calibrate_surface_notebook_executes():
    nb = nbformat.read(NB, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB.parent)}}
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "g < 0 on k in [0.6" in text
    assert "((0, 1), (0.25, 0.5)" in text
    assert "status per slice:" in text
