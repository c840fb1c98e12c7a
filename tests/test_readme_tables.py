"""The README's two-scale table quotes the committed references: each row's verdict and number equal
figures/<spec>/claims.json (tiny) and figures/<spec>/small/claims.json (small), so a regenerated reference
that moves a verdict cannot leave the README behind."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| (?P<spec>[\w-]+) \| (?P<claim>\w+) \| (?P<tiny>[^|]+) \| (?P<small>[^|]+) \|$")


def rows() -> list[dict]:
    """Rows of the README's table whose header reads `| spec | claim | tiny... | small... |`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| spec | claim | tiny"))
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        m = ROW.match(line)
        assert m, f"README two-scale table: cannot read row {line!r}"
        out.append(m.groupdict())
    return out


def parse_cell(cell: str) -> tuple[str, str, float]:
    """'replicated (0.1 [-0.0025, 0.202])' -> ('replicated', 'mean', 0.1); '(worst 1.19)' -> ('worst', 1.19)."""
    m = re.match(r"(not replicated|replicated|inconclusive) \((worst )?([-0-9.e+]+)", cell.strip())
    assert m, f"README two-scale table: cannot read cell {cell!r}"
    return m.group(1), "worst" if m.group(2) else "mean", float(m.group(3))


def claims(spec: str, scale: str) -> dict:
    path = ROOT / "figures" / spec / ("" if scale == "tiny" else scale) / "claims.json"
    return {c["id"]: c for c in json.loads(path.read_text())["claims"]}


def test_table_is_there_and_covers_six_specs():
    assert {r["spec"] for r in rows()} >= {"fig1", "fig8", "lemma-lm", "fig11", "table2", "fig3"}


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_each_row_quotes_its_reference(scale):
    for row in rows():
        verdict, kind, number = parse_cell(row[scale])
        claim = claims(row["spec"], scale)[row["claim"]]
        where = f"README row {row['spec']}/{row['claim']} ({scale})"
        assert verdict == claim["verdict"], f"{where}: says {verdict}, the reference says {claim['verdict']}"
        assert f"{number:.3g}" == f"{claim[kind]:.3g}", f"{where}: quotes {kind} {number}, the reference has {claim[kind]:.3g}"


def test_parse_cell_reads_both_forms():
    assert parse_cell(" not replicated (worst 1.19) ") == ("not replicated", "worst", 1.19)
    assert parse_cell("inconclusive (-0.00931 [-0.0941, 0.0755])") == ("inconclusive", "mean", -0.00931)
