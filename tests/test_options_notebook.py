"""notebooks/options_market_maker.ipynb runs top to bottom (so it cannot rot) and prints what it
claims: the engine's total next to the ledger rebuilt from the fill events, the latency
percentiles, the engine-vs-naive comparison and the relaxed objective before and after tuning."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB = Path(__file__).resolve().parents[1] / "notebooks" / "options_market_maker.ipynb"


@pytest.mark.slow
def test_options_market_maker_notebook_executes():
    nb = nbformat.read(NB, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB.parent)}}
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "ledger from events" in text
    assert "refresh latency (ms):" in text
    assert "engine vs naive at TRUE fair value:" in text
    assert "relaxed objective: initial" in text
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]  # fmt: skip
    assert len(images) == 5
