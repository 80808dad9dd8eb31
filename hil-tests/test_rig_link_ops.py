"""The two ends of the ROM link agree: the op codes and flags the board's side (rom/_rig_link.py, MicroPython) and the
rig's side (dos_rig.link) define are the same names with the same values, and no two ops share a code."""
import ast
from pathlib import Path

RIG_DIR = Path(__file__).resolve().parent / "rig"
SHARED_PREFIXES = ("OP_", "SLEEP_", "FOREVER_US")


def constants(path: Path) -> dict[str, int]:
    """Module-level NAME = <int expression> assignments whose names the two ends share."""
    table = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.startswith(SHARED_PREFIXES):
                table[name] = eval(compile(ast.Expression(node.value), str(path), "eval"), {})  # literals only
    return table


def test_board_and_rig_op_tables_are_the_same():
    board, rig = constants(RIG_DIR / "rom" / "_rig_link.py"), constants(RIG_DIR / "link.py")
    assert board == rig
    assert {"OP_UART_INIT", "OP_UART_WRITE", "OP_UART_READ", "OP_SLEEP", "OP_HELLO"} <= set(board)


def test_op_codes_are_unique_bytes():
    ops = {name: value for name, value in constants(RIG_DIR / "link.py").items() if name.startswith("OP_")}
    assert len(set(ops.values())) == len(ops)
    assert all(0 < value < 256 for value in ops.values())
