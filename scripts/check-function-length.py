#!/usr/bin/env python3
"""Fail when a C function of the project is longer than the limit (120 lines by default).

A function is a top-level definition: a line that starts in column 0 with a type and a name
followed by '(' and whose body opens with '{' in column 0 on the next line(s), as the
project's clang-format style writes them; its length counts from the signature's first line
to the closing '}' in column 0."""
import re
import sys
from pathlib import Path

LIMIT = 120
ROOTS = ["src", "vmwrapper", "tests/helpers"]
SIG = re.compile(r"^(?:[A-Za-z_][\w \*]*?[\s\*])?([A-Za-z_]\w*)\s*\(")


def functions(path):
    lines = path.read_text(errors="replace").split("\n")
    i = 0
    while i < len(lines):
        m = SIG.match(lines[i])
        if m and not lines[i].rstrip().endswith(";") and not lines[i].startswith(("typedef", "struct ", "enum ")):
            j = i
            while j < len(lines) and lines[j] != "{" and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j] == "{":
                k = j + 1
                while k < len(lines) and lines[k] != "}":
                    k += 1
                name = m.group(1)
                if name.isupper():  # a macro that declares the function: CRI_HANDLER(name)
                    inner = re.match(r"^\w+\((\w+)\)", lines[i])
                    name = inner.group(1) if inner else name
                yield name, i + 1, k - i + 1
                i = k
        i += 1


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else LIMIT
    repo = Path(__file__).resolve().parents[1]
    long = []
    for root in ROOTS:
        for p in sorted((repo / root).rglob("*.c")):
            for name, line, n in functions(p):
                if n > limit:
                    long.append(f"{p.relative_to(repo)}:{line}: {name}() is {n} lines (limit {limit})")
    print("\n".join(long) if long else f"no function over {limit} lines")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
