"""A reader for the Grafana Alloy configuration syntax (config.alloy):
blocks (`name.parts "label" { ... }`), attributes (`name = expression`),
and the expressions our configs use: strings, numbers, booleans, lists,
objects, references to other components' exports, `sys.env("NAME")`, and
`+` between strings.

No Alloy binary installs here (no Debian, PyPI or npm package), so its own
`alloy fmt` cannot check the file; this reader fails on anything it does not
know, which keeps the model honest about what it read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TOKEN = re.compile(
    r"""(?P<ws>\s+|//[^\n]*|/\*.*?\*/)
      |(?P<string>"(?:[^"\\\n]|\\.)*")
      |(?P<number>-?\d+(?:\.\d+)?)
      |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<punct>[{}\[\](),=.+:])""",
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Ref:
    """A reference to another component's export, e.g.
    `discovery.relabel.pod_logs.output`."""

    path: str


@dataclass
class Block:
    name: str
    label: str | None = None
    attrs: dict[str, object] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def find(self, name: str) -> list["Block"]:
        return [b for b in self.blocks if b.name == name]


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"config.alloy: unexpected {text[pos:pos + 20]!r}")
        pos = match.end()
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup, match.group()))
    return tokens


class Parser:
    def __init__(self, text: str, env: dict[str, str]):
        self.tokens = tokenize(text)
        self.pos = 0
        self.env = env

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None or (value and token[1] != value) or (kind and token[0] != kind):
            raise ValueError(f"config.alloy: expected {value or kind}, found {token}")
        self.pos += 1
        return token[1]

    def dotted(self) -> str:
        parts = [self.take(kind="ident")]
        while self.peek() and self.peek()[1] == ".":
            self.take(".")
            parts.append(self.take(kind="ident"))
        return ".".join(parts)

    def body(self, block: Block, closing: str | None) -> Block:
        while self.peek() and self.peek()[1] != closing:
            name = self.dotted()
            if self.peek()[1] == "=":
                self.take("=")
                if name in block.attrs:
                    raise ValueError(f"config.alloy: {name} set twice in {block.name}")
                block.attrs[name] = self.expression()
                continue
            label = json.loads(self.take(kind="string")) if self.peek()[0] == "string" else None
            self.take("{")
            block.blocks.append(self.body(Block(name, label), "}"))
            self.take("}")
        return block

    def expression(self):
        value = self.operand()
        while self.peek() and self.peek()[1] == "+":
            self.take("+")
            right = self.operand()
            if not (isinstance(value, str) and isinstance(right, str)):
                raise ValueError("config.alloy: + between non-strings")
            value += right
        return value

    def operand(self):
        kind, text = self.peek()
        if kind == "string":
            self.pos += 1
            return json.loads(text)
        if kind == "number":
            self.pos += 1
            return float(text) if "." in text else int(text)
        if text == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.expression())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            self.take("{")
            obj = {}
            while self.peek()[1] != "}":
                key = json.loads(self.take(kind="string")) if self.peek()[0] == "string" else self.take(kind="ident")
                self.take("=")
                obj[key] = self.expression()
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
            return obj
        if text in ("true", "false"):
            self.pos += 1
            return text == "true"
        name = self.dotted()
        if self.peek() and self.peek()[1] == "(":
            self.take("(")
            args = [self.expression()]
            self.take(")")
            if name != "sys.env":
                raise ValueError(f"config.alloy: function {name} not modelled")
            return self.env.get(args[0], "")
        return Ref(name)


def parse_alloy(text: str, env: dict[str, str]) -> Block:
    """The file as a root block whose children are the components."""
    parser = Parser(text, env)
    root = parser.body(Block("root"), None)
    if parser.peek() is not None:
        raise ValueError(f"config.alloy: unexpected {parser.peek()}")
    return root
