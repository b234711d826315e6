"""docs/protocol.md documents every op and every status code the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from tmem.errors import STATUS
from tmem.wire import Op

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def test_every_op_is_in_the_protocol_document_with_its_number():
    rows = dict(re.findall(r"^\| (\d+) +\| `([A-Z_]+)`", DOC, re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == {op.value: op.name for op in Op}


def test_every_status_code_is_in_the_protocol_document():
    rows = dict(re.findall(r"^\| (\d+) +\| `([A-Za-z]+)` ", DOC, re.MULTILINE))
    codes = {int(k): v for k, v in rows.items() if v[0].isupper() and not v.isupper()}
    assert codes == {code: cls.__name__ for code, cls in STATUS.items()}
