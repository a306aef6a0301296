"""The Formula step's language, read: Excel-style text in, a tree of plain nodes out.

What we chose and why. A formula is lexed and parsed here, by about 250 lines of our own,
into frozen dataclasses that the evaluator (formula.py) walks; nothing is ever handed to
`eval`, `compile` or Python's `ast`, so there is no attribute, import, loop or builtin to
reach: the only names are the row's columns and the fixed function table.
Libraries tried first:
- openpyxl's `formula.tokenizer.Tokenizer` (already a dependency) lexes Excel's syntax, but
  keeps no token positions (whitespace is collapsed, so they cannot be rebuilt), raises an
  IndexError on an unmatched ")" and accepts an unclosed "(": errors could not say where.
- `formulas` and `pycel` evaluate whole workbooks by cell address (A1), not a row's named
  columns, and bring large dependency trees (numpy, scipy, schedula) for a dozen functions.
- `simpleeval` and `asteval` read Python, not Excel (no `&`, `<>`, `^`, `%`, `""` escapes),
  and confine Python's own AST, whose attributes are exactly what must stay out of reach.
- `lark` would parse the grammar, but its errors name grammar terminals and need translating
  back into an analyst's words: more code than the parser it saves, and a new dependency.

Bounds: a formula is at most MAX_LENGTH characters and nests at most MAX_DEPTH levels
(brackets, function calls, operators inside operators), checked while parsing, so a hostile
formula is refused in words before Python's recursion limit is anywhere near.

Positions in messages count characters from 1, the way an analyst counts the formula they typed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

MAX_LENGTH = 8192  # Excel's own limit on a formula's length
MAX_DEPTH = 64     # Excel's limit on nested functions


class FormulaSyntaxError(ValueError):
    """A formula that cannot be read: where (0-based `start`, up to `end`) and why, in words."""

    def __init__(self, message: str, start: int, end: int | None = None):
        super().__init__(f"position {start + 1}: {message}")
        self.message = message
        self.start = start
        self.end = start + 1 if end is None else end


# ---- the tree --------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    start: int  # where the node's text starts in the formula (0-based)
    end: int    # one past where it ends


@dataclass(frozen=True)
class Literal(Node):
    value: float | str | bool


@dataclass(frozen=True)
class Column(Node):
    name: str


@dataclass(frozen=True)
class Prefix(Node):
    """Signs before a value (`-x`, `--x`); in Excel they bind tighter than ^: -2^2 is 4."""

    signs: str
    operand: Node


@dataclass(frozen=True)
class Percent(Node):
    """`x%`: x divided by 100, once per sign."""

    count: int
    operand: Node


@dataclass(frozen=True)
class Chain(Node):
    """Operators of one precedence, left to right: `a + b - c` is one node (a long chain never
    deepens the tree)."""

    level: int
    first: Node
    rest: tuple[tuple[str, int, Node], ...]  # (operator, its position, right operand)


@dataclass(frozen=True)
class Call(Node):
    name: str  # as written; functions are looked up case-insensitively
    args: tuple[Node, ...]


# ---- lexing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # number, text, column, name, op, (, ), sep, end
    text: str  # as written
    start: int
    end: int
    value: object = None


# Binary operators by precedence, lowest first (Excel's order).
LEVELS: tuple[tuple[str, ...], ...] = (("=", "<>", "<", ">", "<=", ">="), ("&",), ("+", "-"), ("*", "/"), ("^",))
PRECEDENCE = {op: level for level, ops in enumerate(LEVELS) for op in ops}
_SINGLE = set("+-*/^&%=<>")
_HINTS = {
    ".": "there are no attributes; a column whose name has a dot goes in brackets, e.g. [a.b]",
    "'": 'text goes in double quotes: "like this"',
    ":": "ranges such as A1:B2 are not read here; name the row's columns, e.g. [price]",
    "!": "other sheets are not read here; use a Lookup step",
    "{": "there are no arrays here",
    "$": "formulas read the row's columns, not cells or the environment",
    "]": "this ] closes no [",
    "#": "error values cannot be typed into a formula",
}


def _number(text: str, i: int) -> int:
    """The end of the number starting at i (digits, a decimal point, an exponent)."""
    n = len(text)
    j = i
    while j < n and text[j].isdigit():
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            while k < n and text[k].isdigit():
                k += 1
            j = k
    return j


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    n = len(text)
    i = 1 if text.startswith("=") else 0  # "=IF(...)" as typed in Excel reads the same as "IF(...)"
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            j = _number(text, i)
            out.append(Token("number", text[i:j], i, j, float(text[i:j])))
            i = j
        elif c == '"':
            j, parts = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise FormulaSyntaxError('unclosed "', i)
                parts.append(text[j:k])
                if text.startswith('""', k):  # "" inside text is one quote, as in Excel
                    parts.append('"')
                    j = k + 2
                    continue
                break
            out.append(Token("text", text[i:k + 1], i, k + 1, "".join(parts)))
            i = k + 1
        elif c == "[":
            k = text.find("]", i + 1)
            if k < 0:
                raise FormulaSyntaxError("unclosed [", i)
            name = text[i + 1:k]
            if not name.strip():
                raise FormulaSyntaxError("[] names no column", i, k + 1)
            out.append(Token("column", text[i:k + 1], i, k + 1, name))
            i = k + 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(Token("name", text[i:j], i, j, text[i:j]))
            i = j
        elif text.startswith(("<>", "<=", ">="), i):
            out.append(Token("op", text[i:i + 2], i, i + 2))
            i += 2
        elif c in _SINGLE:
            out.append(Token("op", c, i, i + 1))
            i += 1
        elif c in "()":
            out.append(Token(c, c, i, i + 1))
            i += 1
        elif c in ",;":  # ";" is the separator where the decimal mark is a comma
            out.append(Token("sep", c, i, i + 1))
            i += 1
        else:
            hint = _HINTS.get(c)
            raise FormulaSyntaxError(f'"{c}" cannot be used in a formula' + (f": {hint}" if hint else ""), i)
    out.append(Token("end", "", n, n))
    return out


# ---- parsing ---------------------------------------------------------------------------
def _shown(token: Token) -> str:
    return "the end of the formula" if token.kind == "end" else f'"{token.text}"'


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokens(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise FormulaSyntaxError("the formula is empty", 0)
        node = self.expression(0, 0)
        tok = self.tok
        if tok.kind == ")":
            raise FormulaSyntaxError('this ")" closes no "("', tok.start)
        if tok.kind == "sep":
            raise FormulaSyntaxError(f'"{tok.text}" separates a function\'s arguments, inside its brackets', tok.start)
        if tok.kind != "end":
            hint = ""
            if tok.kind == "name" and tok.text.upper() in ("AND", "OR", "NOT"):
                hint = f"; {tok.text.upper()} is a function: write {tok.text.upper()}(a, b), not a {tok.text} b"
            raise FormulaSyntaxError(f"expected an operator (such as + or &) or the end of the formula, "
                                     f"found {_shown(tok)}{hint}", tok.start, tok.end)
        return node

    def expression(self, level: int, depth: int) -> Node:
        """Precedence climbing: operators at `level` or tighter, each level a flat chain."""
        if depth > MAX_DEPTH:
            raise FormulaSyntaxError(f"the formula nests more than {MAX_DEPTH} levels deep; "
                                     "split it over several Formula steps", self.tok.start)
        left = self.operand(depth)
        while self.tok.kind == "op" and self.tok.text in PRECEDENCE and PRECEDENCE[self.tok.text] >= level:
            op = self.take()
            op_level = PRECEDENCE[op.text]
            right = self.expression(op_level + 1, depth + 1)  # Excel's operators are all left-associative
            if isinstance(left, Chain) and left.level == op_level:
                left = replace(left, rest=(*left.rest, (op.text, op.start, right)), end=right.end)
            else:
                left = Chain(left.start, right.end, op_level, left, ((op.text, op.start, right),))
        return left

    def operand(self, depth: int) -> Node:
        start = self.tok.start
        signs = ""
        while self.tok.kind == "op" and self.tok.text in "+-":  # a loop, not recursion: ---x is one node
            signs += self.take().text
        node = self.primary(depth)
        count, end = 0, node.end
        while self.tok.kind == "op" and self.tok.text == "%":
            count += 1
            end = self.take().end
        if count:
            node = Percent(node.start, end, count, node)
        if signs:
            node = Prefix(start, node.end, signs, node)
        return node

    def primary(self, depth: int) -> Node:
        tok = self.take()
        if tok.kind in ("number", "text"):
            assert isinstance(tok.value, (float, str))
            return Literal(tok.start, tok.end, tok.value)
        if tok.kind == "column":
            return Column(tok.start, tok.end, str(tok.value))
        if tok.kind == "name":
            if self.tok.kind == "(":
                return self.call(tok, depth)
            if tok.text.upper() in ("TRUE", "FALSE"):
                return Literal(tok.start, tok.end, tok.text.upper() == "TRUE")
            return Column(tok.start, tok.end, tok.text)
        if tok.kind == "(":
            if self.tok.kind == ")":
                raise FormulaSyntaxError('"()" holds nothing', tok.start, self.tok.end)
            inner = self.expression(0, depth + 1)
            close = self.take()
            if close.kind != ")":
                raise FormulaSyntaxError('this "(" is never closed', tok.start)
            return replace(inner, start=tok.start, end=close.end)  # so messages quote "(a+b)" whole
        if tok.kind == "end":
            before = self.tokens[self.i - 2] if self.i >= 2 else None
            after = f' after "{before.text}"' if before is not None else ""
            raise FormulaSyntaxError(f"the formula ends too early: a value is missing{after}", tok.start)
        raise FormulaSyntaxError(f"expected a value (a number, \"text\", a [column] or a function), "
                                 f"found {_shown(tok)}", tok.start, tok.end)

    def call(self, name: Token, depth: int) -> Call:
        opening = self.take()
        args: list[Node] = []
        if self.tok.kind == ")":
            return Call(name.start, self.take().end, name.text, ())
        while True:
            if self.tok.kind in ("sep", ")"):
                raise FormulaSyntaxError(f"an argument of {name.text.upper()} is missing", self.tok.start)
            args.append(self.expression(0, depth + 1))
            tok = self.take()
            if tok.kind == ")":
                return Call(name.start, tok.end, name.text, tuple(args))
            if tok.kind != "sep":
                if tok.kind == "end":
                    raise FormulaSyntaxError(f'the "(" of {name.text.upper()} is never closed', opening.start)
                raise FormulaSyntaxError(f"expected , or ) in {name.text.upper()}(...), found {_shown(tok)}",
                                         tok.start, tok.end)


@lru_cache(maxsize=256)
def parse(text: str) -> Node:
    """The formula's tree (cached: a run evaluates the same formula on every row).
    Raises FormulaSyntaxError."""
    if len(text) > MAX_LENGTH:
        raise FormulaSyntaxError(f"the formula is {len(text):,} characters long; at most {MAX_LENGTH:,} "
                                 "are allowed", MAX_LENGTH)
    return _Parser(text).parse()


def walk(node: Node):
    """Every node of the tree, parents first (a loop: the tree's depth is bounded anyway)."""
    stack = [node]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, (Prefix, Percent)):
            stack.append(item.operand)
        elif isinstance(item, Chain):
            stack.extend(right for _, _, right in reversed(item.rest))
            stack.append(item.first)
        elif isinstance(item, Call):
            stack.extend(reversed(item.args))
