"""README.md keeps telling the truth: parameter tables match the nodes, pictures and links exist."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import param_tables  # noqa: E402

pytestmark = pytest.mark.ros  # the tables import the nodes (rclpy)


@pytest.mark.parametrize("node", param_tables.NODES)
def test_parameter_table_matches_the_declared_parameters(node: str) -> None:
    found = param_tables.readme_tables(param_tables.README.read_text())[node]
    assert found == param_tables.table(node), f"run: python scripts/param_tables.py --write ({node})"


def test_local_links_and_pictures_exist() -> None:
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    assert any(t.endswith(".jpg") for t in local), "the README shows pictures"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, missing
