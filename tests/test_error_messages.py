"""Every error code the server can answer with has words in the client (static/client/errors.js):
a new `ApiError("...")` without a sentence would reach people as a raw code."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_APPS = ("messaging", "teams", "jobs", "presence")
ERRORS_JS = ROOT / "static" / "client" / "errors.js"
SNAKE = re.compile(r"^[a-z]+(_[a-z]+)+$|^[a-z]+$")


def _strings(node: ast.AST, constants: dict[str, ast.AST]) -> set[str]:
    """The string literals an expression can be: a constant, either side of an `if`, a
    dict's values (with `**NAME` of the module's own constants unpacked)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, constants) | _strings(node.orelse, constants)
    if isinstance(node, ast.Dict):
        return set().union(*(_strings(value, constants) for value in node.values))
    if isinstance(node, ast.Name) and node.id in constants:
        return _strings(constants[node.id], constants)
    return set()


def server_error_codes() -> set[str]:
    codes: set[str] = set()
    for app in SERVER_APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            constants = {
                target.id: node.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "ApiError" and node.args:
                    codes |= _strings(node.args[0], constants)
                if name == "ts_argument" and len(node.args) > 1:
                    codes |= _strings(node.args[1], constants)
                for keyword in node.keywords:
                    # errors= of an api_method, error= of a lookup (not a codec's errors=).
                    if keyword.arg in ("error", "errors") and name not in ("decode", "encode"):
                        codes |= _strings(keyword.value, constants)
    return {code for code in codes if SNAKE.match(code)}


def client_error_codes() -> set[str]:
    table = ERRORS_JS.read_text().split("const MESSAGES = {", 1)[1].split("\n};", 1)[0]
    return set(re.findall(r"^\s+([a-z_]+):", table, re.MULTILINE))


def test_every_server_error_code_has_words_in_the_client() -> None:
    server = server_error_codes()
    assert {"name_taken", "not_in_channel", "is_archived", "ratelimited", "not_archived"} <= server
    assert {"channel_not_found", "invalid_timestamp", "no_item_specified", "team_not_empty"} <= server
    missing = server - client_error_codes()
    assert not missing, f"add a sentence to static/client/errors.js for: {sorted(missing)}"
