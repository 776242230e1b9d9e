#!/usr/bin/env python3
"""Fails when modules of a workspace crate depend on each other in a cycle.

Usage: scripts/check-module-cycles.py [ROOT] [-v]

ROOT is the workspace root (default: the directory above this script). For every crate root
of every workspace member (src/lib.rs, src/main.rs, src/bin/*.rs) the script follows the
`mod` declarations to build the module tree, then reads each module's references to other
modules of the same crate: `use` trees and inline paths starting with `crate::`, `super::` or
`self::` (and `use` paths starting with a child module's name). Names re-exported by a module
(`pub use a::X` in lib.rs or in a directory module's mod.rs) are followed to where they come
from, so `crate::X` counts as a use of `a`.

A reference from module A to module T is an edge between siblings: between the two children
of their deepest common ancestor that contain A and T. So at the crate root, `a::b` counts as
part of its top-level module `a`; inside a directory module such as `split/`, its children
(`split::driver`, `split::device`) form their own graph. A module using its parent's (or any
ancestor's) items, and a parent using its children, is not an edge. Test-only code
(`#[cfg(test)]` items, such as `mod tests`) and comments are ignored.

Every graph of siblings must be acyclic; each cycle found is printed with the place of one
reference per edge, and the script exits with status 1. With -v it prints every edge.
Only the standard library is used.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def mask_comments_and_literals(src):
    """Returns `src` with comments, string and char literals replaced by spaces (newlines kept),
    so that offsets and line numbers stay those of the file."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    char_re = re.compile(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")
    raw_re = re.compile(r'b?r(#*)"')
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")) and (
            m := raw_re.match(src, i)
        ):
            end = '"' + m.group(1)
            j = src.find(end, m.end())
            j = n if j < 0 else j + len(end)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            m = char_re.match(src, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


def matching_brace(text, open_pos):
    """Index just past the brace that closes the one at `open_pos`."""
    depth = 0
    for k in range(open_pos, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(text)


CFG_RE = re.compile(r"#\[cfg\((.*?)\)\]", re.S)


def is_test_only(cfg):
    return re.search(r"\btest\b", cfg) and not re.search(r"not\(\s*test\s*\)", cfg)


def mask_test_items(text):
    """Blanks every item under a test-only `#[cfg(...)]` (the attribute included)."""
    out = list(text)
    for m in CFG_RE.finditer(text):
        if not is_test_only(m.group(1)):
            continue
        j = m.end()
        # Skip further attributes and white space before the item.
        while True:
            while j < len(text) and text[j].isspace():
                j += 1
            if text.startswith("#[", j):
                depth = 0
                while j < len(text):
                    if text[j] == "[":
                        depth += 1
                    elif text[j] == "]":
                        depth -= 1
                        if depth == 0:
                            j += 1
                            break
                    j += 1
                continue
            break
        semi = text.find(";", j)
        brace = text.find("{", j)
        if brace >= 0 and (semi < 0 or brace < semi):
            end = matching_brace(text, brace)
        else:
            end = len(text) if semi < 0 else semi + 1
        for k in range(m.start(), end):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def tokenize_use(tree):
    return re.findall(IDENT + r"|::|[{},*]|\$crate", tree)


def parse_use_tree(tokens, pos, prefix, out):
    """Parses one use tree from tokens[pos]; appends (path, name) pairs (name None for a glob)."""
    path = list(prefix)
    while pos < len(tokens):
        t = tokens[pos]
        if t == "{":
            pos += 1
            while pos < len(tokens) and tokens[pos] != "}":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                pos = parse_use_tree(tokens, pos, path, out)
            return pos + 1
        if t == "*":
            out.append((path, None))
            return pos + 1
        if t == "::":
            pos += 1
            continue
        if t in (",", "}"):
            break
        if t == "as":
            alias = tokens[pos + 1] if pos + 1 < len(tokens) else None
            if path:
                out.append((path, alias if alias != "_" else None))
            return pos + 2
        if t == "self" and path:
            # `a::{self, ...}`: the module `a` itself.
            pos += 1
            continue
        path = path + [t]
        pos += 1
    if path:
        out.append((path, path[-1]))
    return pos


class Module:
    def __init__(self, path, file, span):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.span = span  # (start, end) inside file, for inline modules
        self.children = {}  # name -> Module
        self.imports = {}  # name -> absolute path (list), from this module's use items
        self.refs = []  # (raw path list, line, is_use)


def child_file(parent_file, parent_is_dir_owner, name):
    base = os.path.dirname(parent_file)
    if not parent_is_dir_owner:
        base = os.path.join(base, os.path.splitext(os.path.basename(parent_file))[0])
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.isfile(cand):
            return cand
    return None


MOD_RE = re.compile(r"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])")
USE_RE = re.compile(r"(?<![\w$])use\s+([^;]*);")
PATH_RE = re.compile(r"(?<![\w:])(\$?crate|super|self)((?:\s*::\s*" + IDENT + r")+)")


def load_file_module(path, file, is_root, modules, problems):
    try:
        with open(file, encoding="utf-8") as f:
            raw = f.read()
    except OSError as e:
        problems.append(f"cannot read {file}: {e}")
        return None
    text = mask_test_items(mask_comments_and_literals(raw))
    dir_owner = is_root or os.path.basename(file) == "mod.rs"
    top = Module(path, file, (0, len(text)))
    modules[path] = top
    # Inline modules (spans) and file modules declared here.
    inline = []  # (start, end, Module)

    def module_at(pos):
        best = top
        for s, e, m in inline:
            if s <= pos < e and len(m.path) > len(best.path):
                best = m
        return best

    for m in MOD_RE.finditer(text):
        name, kind = m.group(1), m.group(2)
        owner = module_at(m.start())
        if kind == "{":
            open_pos = m.end() - 1
            end = matching_brace(text, open_pos)
            sub = Module(owner.path + (name,), file, (open_pos, end))
            owner.children[name] = sub
            modules[sub.path] = sub
            inline.append((open_pos, end, sub))
        else:
            if owner is not top:
                continue  # a file module inside an inline module: not used here
            cf = child_file(file, dir_owner, name)
            if cf is None:
                problems.append(f"{file}: `mod {name};` has no file")
                continue
            sub = load_file_module(path + (name,), cf, False, modules, problems)
            if sub is not None:
                top.children[name] = sub

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    use_spans = []
    for m in USE_RE.finditer(text):
        owner = module_at(m.start())
        tokens = tokenize_use(m.group(1))
        pairs = []
        parse_use_tree(tokens, 0, [], pairs)
        for p, name in pairs:
            owner.refs.append((p, line_of(m.start()), True))
            if name is not None:
                owner.imports[name] = p
        use_spans.append((m.start(), m.end()))
    for m in PATH_RE.finditer(text):
        if any(s <= m.start() < e for s, e in use_spans):
            continue
        # `pub(in crate::a)` is a visibility, not a use.
        before = text[max(0, m.start() - 8) : m.start()]
        if re.search(r"\(\s*in\s+$", before):
            continue
        segs = [m.group(1).lstrip("$")] + re.findall(IDENT, m.group(2))
        module_at(m.start()).refs.append((segs, line_of(m.start()), False))
    return top


class Crate:
    def __init__(self, name, root_file):
        self.name = name
        self.root_file = root_file
        self.modules = {}
        self.problems = []
        self.root = load_file_module((), root_file, True, self.modules, self.problems)

    def absolute(self, owner, segs, depth=0):
        """Absolute module-tree path of `segs` as written in module `owner` (None: external)."""
        first = segs[0]
        if first == "crate":
            base, rest = (), segs[1:]
        elif first in ("self", "super"):
            base = owner.path
            rest = list(segs)
            while rest and rest[0] in ("self", "super"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
        elif first in owner.children:
            base, rest = owner.path, segs
        elif depth < 16 and first in owner.imports and owner.imports[first] is not segs:
            target = self.absolute(owner, owner.imports[first], depth + 1)
            if target is None:
                return None
            return target + list(segs[1:])
        else:
            return None  # another crate, the prelude or a local item
        return list(base) + list(rest)

    def resolve(self, abspath, depth=0):
        """The deepest module that `abspath` names or lies in, following re-exports."""
        cur = self.modules[()]
        i = 0
        while i < len(abspath):
            name = abspath[i]
            if name in cur.children:
                cur = cur.children[name]
                i += 1
                continue
            if depth < 16 and name in cur.imports:
                target = self.absolute(cur, cur.imports[name])
                if target is not None and target != list(cur.path) + [name]:
                    return self.resolve(target + list(abspath[i + 1 :]), depth + 1)
            break
        return cur.path

    def sibling_edges(self):
        """{parent path: {(a, b): (file, line)}}: a -> b between children of `parent`."""
        edges = defaultdict(dict)
        for mod in self.modules.values():
            for segs, line, _ in mod.refs:
                ab = self.absolute(mod, segs)
                if ab is None:
                    continue
                target = self.resolve(ab)
                src = mod.path
                k = 0
                while k < len(src) and k < len(target) and src[k] == target[k]:
                    k += 1
                if k == len(src) or k == len(target):
                    continue  # same module, or an ancestor/descendant
                parent = src[:k]
                key = (src[k], target[k])
                edges[parent].setdefault(key, (mod.file, line))
        return edges


def find_cycles(nodes, adj):
    """Strongly connected components with more than one node (Tarjan), each as a cycle path."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            strong(v)
    cycles = []
    for comp in out:
        # One concrete cycle through the component's first node (BFS back to it).
        cs = set(comp)
        start = comp[0]
        prev = {start: None}
        queue = [start]
        found = None
        while queue and found is None:
            v = queue.pop(0)
            for w in sorted(adj.get(v, ())):
                if w not in cs:
                    continue
                if w == start:
                    found = v
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = [found]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])
        path.reverse()
        cycles.append((comp, path + [start]))
    return cycles


def workspace_members(root):
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as f:
        toml = f.read()
    m = re.search(r"^\[workspace\][^\[]*?members\s*=\s*\[(.*?)\]", toml, re.S | re.M)
    if not m:
        return ["."]
    return re.findall(r'"([^"]+)"', m.group(1))


def package_name(member_dir):
    try:
        with open(os.path.join(member_dir, "Cargo.toml"), encoding="utf-8") as f:
            m = re.search(r'^\s*name\s*=\s*"([^"]+)"', f.read(), re.M)
            return m.group(1) if m else os.path.basename(member_dir)
    except OSError:
        return os.path.basename(member_dir)


def crate_roots(member_dir):
    src = os.path.join(member_dir, "src")
    roots = [os.path.join(src, f) for f in ("lib.rs", "main.rs")]
    bindir = os.path.join(src, "bin")
    if os.path.isdir(bindir):
        for f in sorted(os.listdir(bindir)):
            p = os.path.join(bindir, f)
            roots.append(p if f.endswith(".rs") else os.path.join(p, "main.rs"))
    return [r for r in roots if os.path.isfile(r)]


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    if any(a.startswith("-") for a in args) or len(args) > 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), ".."))
    failures, problems = [], []
    n_crates = n_modules = n_edges = 0
    for member in workspace_members(root):
        mdir = os.path.join(root, member)
        pkg = package_name(mdir)
        for rf in crate_roots(mdir):
            label = pkg if rf.endswith("lib.rs") else f"{pkg} ({os.path.relpath(rf, mdir)})"
            crate = Crate(label, rf)
            problems += crate.problems
            n_crates += 1
            n_modules += len(crate.modules)
            for parent, edges in sorted(crate.sibling_edges().items()):
                n_edges += len(edges)
                adj = defaultdict(set)
                for a, b in edges:
                    adj[a].add(b)
                where = "crate root" if not parent else "::".join(parent)
                if verbose:
                    for (a, b), (f, line) in sorted(edges.items()):
                        print(f"{label}: {where}: {a} -> {b}  ({os.path.relpath(f, root)}:{line})")
                nodes = {x for e in edges for x in e}
                for comp, cycle in find_cycles(nodes, adj):
                    lines = [
                        f"{label}: module cycle among the children of {where}: "
                        + " -> ".join(cycle)
                    ]
                    for a, b in zip(cycle, cycle[1:]):
                        f, line = edges[(a, b)]
                        lines.append(f"    {a} uses {b} at {os.path.relpath(f, root)}:{line}")
                    shown = set(zip(cycle, cycle[1:]))
                    more = [
                        (a, b, edges[(a, b)])
                        for (a, b) in sorted(edges)
                        if a in comp and b in comp and (a, b) not in shown
                    ]
                    if more:
                        lines.append("    tied into the same knot (" + ", ".join(comp) + ") by:")
                        for a, b, (f, line) in more:
                            lines.append(f"    {a} uses {b} at {os.path.relpath(f, root)}:{line}")
                    failures.append("\n".join(lines))
    for p in problems:
        print(f"check-module-cycles: warning: {p}", file=sys.stderr)
    if failures:
        print("\n".join(failures))
        print(
            f"check-module-cycles: {len(failures)} cycle(s) found; modules that are siblings "
            "must depend on each other in one direction only (move what both need into a "
            "lower module)",
        )
        return 1
    print(
        f"check-module-cycles: no cycles ({n_crates} crates, {n_modules} modules, "
        f"{n_edges} dependencies between sibling modules)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
