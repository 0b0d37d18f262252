"""Every chapter follows the course's conventions. Execution itself is nbval's job:
`pytest --nbval-lax notebooks` (part of `make test`) runs every chapter top to bottom."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_setup_and_tour", "01_datasets", "02_metrics_and_losses", "03_facechannel", "04_senet50_finetune",
            "05_multitask_temporal", "06_scan_cci", "07_facernet", "08_gradcam", "09_results"]


def test_the_chapter_map_is_complete():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_conventions(path):
    assert path.stat().st_size < 2 * 1024 * 1024, "notebooks stay under 2 MB"
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells), \
        "no papermill injected-parameters cell (it would undo a student's edit of the parameters cell)"
    src = "".join(params[0]["source"])
    for name in ("profile", "data_root", "device", "seed"):
        assert re.search(rf"^{name}\s*=", src, re.M), f"parameters cell lacks {name}"
    assert re.search(r'^profile\s*=\s*"quick"', src, re.M), "quick is the default profile"
    # papermill must see every parameter (a comment holding "=" hides it, and -p would then not reach it)
    import papermill as pm

    declared = set(pm.inspect_notebook(str(path)))
    assigned = {m for m in re.findall(r"^(\w+)\s*=", src, re.M)}
    assert assigned <= declared, f"papermill cannot parse parameter(s) {sorted(assigned - declared)}"
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert len(re.findall(r"^# ", markdown, re.M)) == 1, "one H1"
    assert "## Questions" in markdown and "## Summary" in markdown
    code = [c for c in cells if c["cell_type"] == "code"]
    assert any(c.get("outputs") for c in code), "outputs from a quick run are committed"
    assert "widgets" not in nb.get("metadata", {}), "no widget state"
    blob = json.dumps(nb)
    assert not re.search(r'"(/root|/home|/tmp|/work|/Users)/', blob), "no absolute paths"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])), "no errors"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_set_up_cell_is_at_most_five_lines(path):
    """fastbook style: the first code cell after `parameters` is imports and one call; the chapter shows the key
    lines of each idea where it teaches it and calls the recipe for the rest."""
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    i = next(k for k, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", []))
    setup = "".join(code[i + 1]["source"]).strip().splitlines()
    assert len(setup) <= 5, f"set-up cell of {len(setup)} lines:\n" + "\n".join(setup)
