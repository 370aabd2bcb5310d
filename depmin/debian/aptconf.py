"""apt's configuration for a root, read the way libapt-pkg (2.6) reads it.

What ``apt-get purge --auto-remove`` keeps depends on configuration
(RecommendsImportant, SuggestsImportant, NeverAutoRemove, kernel protection),
and Docker images change apt's defaults in ``apt.conf.d``.  depmin must see the
target's values without python-apt, so this module re-implements apt's reader:
the case-insensitive tree of ``Configuration::Lookup``, the grammar of
``ReadConfigFile`` (quirks included: unquoted values, ``"a" "b"``
concatenation, ``%xx`` escapes in tags, tabs widened to eight spaces), the
file-name filter of ``GetListOfFilesInDir`` and the order of ``pkgInitConfig``:
``$APT_CONFIG``, then every accepted file of ``Dir::Etc::parts``, then
``Dir::Etc::main``.  The front end's ``Binary::<name>`` subtree is then moved to
the top, and ``-o`` overrides are applied last, as apt's command line does.

The tree holds only what files and overrides set.  apt's compiled-in defaults
are supplied by the accessors' ``default`` arguments, as apt's own callers do;
the few ``Dir`` defaults needed to locate the files are used internally only
(so ``#clear`` of a compiled-in default leaves no trace in the tree).
``#include`` and ``$APT_CONFIG`` name host paths for apt; depmin resolves them
inside the root, which is what apt sees when it runs in the target.  Relative
ones depend on apt's working directory and are refused.
"""

from __future__ import annotations

import os
import stat
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from depmin.errors import ConfigError, RootError
from depmin.rootfs import Root

#: C ``isspace`` in the C locale; Python's str.isspace also accepts Unicode spaces.
_SPACE = " \t\n\v\f\r"
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HEX = frozenset(string.hexdigits)
#: ``#`` starts a comment unless it starts one of these directives.
_DIRECTIVES = ("clear", "include", "x-apt-configure-index")
#: ``ReadConfigFile`` refuses ``#include`` deeper than this.
MAX_INCLUDE_DEPTH = 10
#: Bigger files are refused rather than read (apt has no limit; nobody needs one).
MAX_FILE_SIZE = 16 << 20
#: ``pkgInitConfig`` defaults that decide where the configuration files are.
_DIR_DEFAULTS = (
    ("Dir", "/"),
    ("Dir::Etc", "etc/apt/"),
    ("Dir::Etc::main", "apt.conf"),
    ("Dir::Etc::parts", "apt.conf.d"),
)
_FALSE_WORDS = frozenset({"no", "false", "without", "off", "disable"})
_TRUE_WORDS = frozenset({"yes", "true", "with", "on", "enable"})


def _fold(text: str) -> str:
    """ASCII-only lower case, like apt's ``tolower_ascii`` (str.lower is Unicode-aware)."""
    return text.translate(_LOWER)


def _canonical(text: str) -> str:
    """One spelling per byte string: ``%c3%a9`` and a literal é must compare equal."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


def split_name(name: str) -> list[str]:
    """Split a key at ``::`` exactly as ``Configuration::Lookup`` scans it.

    apt resumes scanning one character after each separator, so ``A::::B`` is
    ``["A", "::B"]``; an empty component names a new list entry.
    """
    parts: list[str] = []
    start = 0
    pos = 0
    while len(name) - pos >= 2:
        if name[pos] == ":" and name[pos + 1] == ":":
            parts.append(name[start:pos])
            start = pos + 2
            pos = start + 1
            continue
        pos += 1
    parts.append(name[start:])
    return parts


@dataclass(frozen=True)
class ConfigItem:
    """One node of apt's configuration tree; list entries have an empty tag."""

    tag: str
    value: str = ""
    children: tuple[ConfigItem, ...] = ()

    def child(self, tag: str) -> ConfigItem | None:
        """The first child whose tag matches, ignoring ASCII case (list entries never match)."""
        if not tag:
            return None
        folded = _fold(tag)
        for item in self.children:
            if _fold(item.tag) == folded:
                return item
        return None


def _c_strtol(text: str) -> int | None:
    """``(int) strtol(text, &end, 0)`` when it consumes all of ``text``, else None."""
    pos = 0
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    negative = False
    if pos < len(text) and text[pos] in "+-":
        negative = text[pos] == "-"
        pos += 1
    base = 10
    if text.startswith(("0x", "0X"), pos) and pos + 2 < len(text) and text[pos + 2] in _HEX:
        base = 16
        pos += 2
    elif text.startswith("0", pos):
        base = 8
    digits = "0123456789abcdef"[:base]
    end = pos
    while end < len(text) and _fold(text[end]) in digits:
        end += 1
    if end == pos or end != len(text):
        return None
    value = int(text[pos:end], base)
    value = -value if negative else value
    value = max(-(2**63), min(2**63 - 1, value))  # strtol clamps to LONG_MIN/LONG_MAX
    return (value + 2**31) % 2**32 - 2**31  # then the result is stored in an int


def string_to_bool(text: str, default: bool) -> bool:
    """apt's ``StringToBool``: a whole C integer (``01``, ``0x1``) that is 0 or 1, else
    the yes/no words, else ``default``."""
    number = _c_strtol(text)
    if number is not None and number in (0, 1):
        return number == 1
    folded = _fold(text)
    if folded in _FALSE_WORDS:
        return False
    if folded in _TRUE_WORDS:
        return True
    return default


def _vectorize(text: str) -> list[str]:
    """apt's ``VectorizeString(text, ',')``: a trailing comma adds no empty entry."""
    if not text:
        return []
    out: list[str] = []
    start = end = 0
    while True:
        while end < len(text) and text[end] != ",":
            end += 1
        out.append(text[start:end])
        start = end + 1
        if end == len(text):
            return out
        end += 1
        if end == len(text):
            return out


def _find(top: ConfigItem, key: str) -> ConfigItem | None:
    node: ConfigItem | None = top
    for part in split_name(key):
        if node is None:
            return None
        node = node.child(part)
    return node


@dataclass(frozen=True)
class AptConfig:
    """The effective apt configuration of a root, with apt's accessor semantics.

    ``sources`` lists the files read, in the order apt reads them, as apt names them
    (root-relative, symbolic links not resolved).
    """

    tree: ConfigItem = ConfigItem("")
    sources: tuple[str, ...] = ()

    def lookup(self, key: str) -> ConfigItem | None:
        return _find(self.tree, key)

    def exists(self, key: str) -> bool:
        return self.lookup(key) is not None

    def get(self, key: str, default: str = "") -> str:
        """``Find``: an empty value counts as unset."""
        item = self.lookup(key)
        return item.value if item is not None and item.value else default

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``FindB``: unset or empty gives ``default``, and so does an unknown word."""
        item = self.lookup(key)
        if item is None or not item.value:
            return default
        return string_to_bool(item.value, default)

    def get_list(self, key: str, default: str = "") -> tuple[str, ...]:
        """``FindVector``: a value on the key itself (``-o Key=a,b``) replaces the entries."""
        item = self.lookup(key)
        if item is None:
            return tuple(_vectorize(default))
        if item.value:
            return tuple(_vectorize(item.value))
        values = [child.value for child in item.children]
        return tuple(values) if values else tuple(_vectorize(default))

    def dump(self) -> tuple[tuple[str, str], ...]:
        """(full key, value) for every node in tree order, like ``apt-config dump``."""
        out: list[tuple[str, str]] = []
        stack: list[tuple[str, ConfigItem]] = [("", item) for item in reversed(self.tree.children)]
        while stack:
            prefix, item = stack.pop()
            name = f"{prefix}::{item.tag}" if prefix else item.tag
            out.append((name, item.value))
            stack.extend((name, child) for child in reversed(item.children))
        return tuple(out)

    @property
    def recommends_important(self) -> bool:
        return self.get_bool("APT::AutoRemove::RecommendsImportant", True)

    @property
    def suggests_important(self) -> bool:
        return self.get_bool("APT::AutoRemove::SuggestsImportant", True)

    @property
    def never_autoremove(self) -> tuple[str, ...]:
        """POSIX extended regexes, searched case-insensitively in package names."""
        return self.get_list("APT::NeverAutoRemove")

    @property
    def versioned_kernel_packages(self) -> tuple[str, ...]:
        return self.get_list("APT::VersionedKernelPackages")

    @property
    def protect_kernels(self) -> bool:
        return self.get_bool("APT::Protect-Kernels", True)

    @property
    def ignore_hold(self) -> bool:
        return self.get_bool("APT::Ignore-Hold", False)

    @property
    def solver(self) -> str:
        return self.get("APT::Solver", "internal")


# --- the mutable tree apt builds while reading -------------------------------------------


class _Node:
    __slots__ = ("tag", "value", "children", "parent")

    def __init__(self, tag: str, parent: _Node | None) -> None:
        self.tag = tag
        self.value = ""
        self.children: list[_Node] = []
        self.parent = parent


def _child(node: _Node, tag: str, create: bool) -> _Node | None:
    if tag:
        folded = _fold(tag)
        for item in node.children:
            if _fold(item.tag) == folded:
                return item
    if not create:
        return None
    new = _Node(tag, node)
    node.children.append(new)
    return new


class _Tree:
    """``Configuration``'s Set/Clear/MoveSubTree/FindFile on a tree being built."""

    def __init__(self) -> None:
        self.root = _Node("", None)

    def lookup(self, name: str, create: bool = False) -> _Node | None:
        node: _Node | None = self.root
        for part in split_name(name):
            if node is None:
                return None
            node = _child(node, part, create)
        return node

    def set(self, name: str, value: str) -> None:
        node = self.lookup(name, create=True)
        assert node is not None
        node.value = value

    def clear(self, name: str) -> None:
        node = self.lookup(name)
        if node is not None:
            node.value = ""
            node.children = []

    def move_subtree(self, name: str) -> None:
        """``MoveSubTree(name, NULL)``: re-set every node below ``name`` at the top, children
        before their parent, so an intermediate node's empty value is set last."""
        top = self.lookup(name)
        if top is None:
            return
        top.value = ""
        moved, top.children = top.children, []
        order: list[_Node] = []
        stack = list(reversed(moved))
        while stack:  # reverse post-order, built iteratively (nesting depth is unbounded)
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        for node in reversed(order):
            tags: list[str] = []
            cur: _Node | None = node
            while cur is not None and cur is not top:
                tags.append(cur.tag)
                cur = cur.parent
            self.set("::".join(reversed(tags)), node.value)

    def find_file(self, name: str) -> str:
        """``FindFile`` without a default: relative values are joined to their parents'."""
        rootdir = self.lookup("RootDir")
        result = rootdir.value if rootdir is not None else ""
        if result and not result.endswith("/"):
            result += "/"
        node = self.lookup(name)
        if node is None or not node.value:
            return result
        value = node.value
        while node.parent is not None:
            parent = node.parent
            if not parent.value:
                node = parent
                continue
            if value.startswith("/"):
                if value.startswith("/dev/null"):
                    value = "/dev/null"
                break
            if value.startswith(("~/", "./", "../")):
                break
            if not parent.value.endswith("/"):
                value = "/" + value
            value = parent.value + value
            node = parent
        return result + value

    def freeze(self) -> ConfigItem:
        done: dict[int, ConfigItem] = {}
        order: list[_Node] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        for node in reversed(order):
            kids = tuple(done.pop(id(child)) for child in node.children)
            done[id(node)] = ConfigItem(node.tag, node.value, kids)
        return done[id(self.root)]


# --- ReadConfigFile ------------------------------------------------------------------------


class _Op(NamedTuple):
    kind: str  # "set", "clear" or "include"
    name: str
    value: str
    line: int


def _parse_quote_word(text: str, start: int) -> tuple[str, int] | None:
    """apt's ``ParseQuoteWord``: one word, ``"..."`` and ``[...]`` may hold spaces,
    quotes are dropped and ``%xx`` decoded; returns (word, position after spaces)."""
    pos = start
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    while pos < len(text) and text[pos] not in _SPACE:
        if text[pos] == '"':
            pos = text.find('"', pos + 1)
            if pos < 0:
                return None
        if text[pos] == "[":
            pos = text.find("]", pos + 1)
            if pos < 0:
                return None
        pos += 1
    out: list[str] = []
    cur = start
    while cur < pos:
        char = text[cur]
        if char == "%" and cur + 2 < pos and text[cur + 1] in _HEX and text[cur + 2] in _HEX:
            byte = int(text[cur + 1 : cur + 3], 16)
            out.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
            cur += 3
            continue
        if char != '"':
            out.append(char)
        cur += 1
    word = "".join(out).partition("\0")[0]  # the C string ends at a decoded NUL
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return _canonical(word), pos


def _parse_c_word(text: str, start: int) -> tuple[str, int] | None:
    """apt's ``ParseCWord``: only quoted strings separated by blanks, concatenated with
    one space per blank run; anything unquoted makes it fail."""
    pos = start
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            end = text.find('"', pos + 1)
            if end < 0:
                return None
            out.append(text[pos + 1 : end])
            pos = end + 1
            continue
        if char not in _SPACE:
            return None
        if not (pos != start and text[pos - 1] in _SPACE):
            out.append(" ")
        pos += 1
    return "".join(out), pos


def _strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    """Remove ``/* */``, ``//`` and ``#`` comments that are outside double quotes."""
    if in_comment:
        end = line.find("*/")
        if end < 0:
            return "", True
        line = line[end + 2 :]
    start = 0
    while (start := line.find("//", start)) >= 0:
        if line.count('"', 0, start) % 2:
            start += 1
            continue
        line = line[:start]
        break
    start = 0
    while (start := line.find("#", start)) >= 0:
        if line.count('"', 0, start) % 2 or line.startswith(_DIRECTIVES, start + 1):
            start += 1
            continue
        line = line[:start]
        break
    fragment = ""
    start = 0
    while (start := line.find("/*", start)) >= 0:
        if line.count('"', 0, start) % 2:
            start += 2
            continue
        fragment += line[:start]
        end = line.find("*/", start + 2)
        if end < 0:
            return fragment, True
        line = line[end + 2 :]
        start = 0
    return fragment + line, False


def _parse_config(text: str, path: str) -> Iterator[_Op]:
    """The Set/Clear/#include operations of one file, in order; ``path`` is for errors.

    Raises ConfigError where apt reports "Syntax error"; an unclosed scope at the end
    of the file is accepted, as apt accepts it.
    """
    buffer = ""
    stack: list[str] = []
    parent = ""
    in_comment = False
    lineno = 0
    for raw in text.split("\n"):
        lineno += 1
        line, in_comment = _strip_comments(raw.replace("\t", "        ").strip(_SPACE), in_comment)
        if not line:
            continue
        in_quote = False
        seg = 0
        for pos, char in enumerate(line):
            if char == '"':
                in_quote = not in_quote
            if in_quote or char not in "{;}":
                continue
            piece = line[seg:pos].strip(_SPACE)
            if buffer and piece:
                buffer += " "
            buffer += piece
            seg = pos + 1
            if char == "{" and not buffer:
                raise ConfigError(f"line {lineno}: block starts with no name", path)
            if not buffer:
                if char == "}":
                    parent = stack.pop() if stack else ""
                continue
            op, scope = _statement(buffer, char, parent, path, lineno)
            if op is not None:
                yield op
            if char == "{":
                stack.append(parent)
                parent = scope
            buffer = ""
            if char == "}":
                parent = stack.pop() if stack else ""
        rest = line[seg:].lstrip(" \t").rstrip(" \t\n\r")
        if rest and buffer:
            buffer += " "
        buffer += rest
    if buffer:
        raise ConfigError(f"line {lineno}: extra junk at end of file", path)


def _statement(
    buffer: str, term: str, parent: str, path: str, lineno: int
) -> tuple[_Op | None, str]:
    """One ``tag [value]`` statement ended by ``term`` (``;``, ``{`` or ``}``).

    Returns its operation, if any, and the scope a ``{`` opens.
    """
    parsed = _parse_quote_word(buffer, 0)
    if parsed is None:
        raise ConfigError(f"line {lineno}: malformed tag", path)
    tag, pos = parsed
    word_parsed = _parse_c_word(buffer, pos) or _parse_quote_word(buffer, pos)
    no_word = False
    if word_parsed is None:
        if term != "{":
            word, tag = tag, ""
        else:
            word, no_word = "", True
    else:
        word, pos = word_parsed
    if pos < len(buffer):
        raise ConfigError(f"line {lineno}: extra junk after value", path)
    if term == "{":
        parent = f"{parent}::{tag}" if parent else tag
        tag = ""
    if not parent:
        item = tag
    elif term != "{" or tag:
        item = f"{parent}::{tag}"
    else:
        item = parent
    if tag.startswith("#"):
        if parent:
            raise ConfigError(f"line {lineno}: directives can only be done at the top level", path)
        directive = tag[1:]
        if directive == "clear":
            return _Op("clear", word, "", lineno), parent
        if directive == "include":
            return _Op("include", word, "", lineno), parent
        if directive == "x-apt-configure-index":  # it only feeds apt's type checks
            return None, parent
        raise ConfigError(f"line {lineno}: unsupported directive {directive!r}", path)
    if not tag and not no_word and word == "#clear":
        raise ConfigError(
            f"line {lineno}: clear directive requires an option tree as argument", path
        )
    return (None if no_word else _Op("set", item, word, lineno)), parent


# --- GetListOfFilesInDir and pkgInitConfig ---------------------------------------------------


def accepted_part_name(name: str) -> bool:
    """Would apt read ``name`` from a configuration directory (``conf`` or no extension)?

    apt accepts ASCII letters, digits, ``_``, ``-``, ``:`` and ``.``; the extension
    (after the last dot) must be exactly ``conf``; dot files and names ending in a
    dot are skipped.  So ``foo.disabled``, ``foo.dpkg-old``, ``foo~`` and
    ``foo.CONF`` are ignored.  ``Dir::Ignore-Files-Silently`` only silences apt's
    notice about such names; it never makes apt read or skip a file.
    """
    if not name or name.startswith("."):
        return False
    dot = name.rfind(".")
    if dot >= 0 and name[dot + 1 :] not in ("conf", ""):
        return False
    allowed = string.ascii_letters + string.digits + "_-:."
    return all(char in allowed for char in name) and not name.endswith(".")


class _Unreadable(Exception):
    """Why apt could not open a file; becomes a ConfigError naming whoever asked for it."""


def _include_error(origin: tuple[str, int], path: str, why: str) -> ConfigError:
    return ConfigError(f"line {origin[1]}: cannot include {path}: {why}", origin[0])


class _Loader:
    def __init__(self, root: Root) -> None:
        self.root = root
        self.files = _Tree()  # what the files and overrides set: the result
        self.effective = _Tree()  # the same plus apt's Dir defaults: where to read next
        for key, value in _DIR_DEFAULTS:
            self.effective.set(key, value)
        self.sources: list[str] = []

    def apply(self, op: _Op) -> None:
        for tree in (self.files, self.effective):
            if op.kind == "set":
                tree.set(op.name, op.value)
            else:
                tree.clear(op.name)

    def resolve(self, path: str) -> str | None:
        if not path.startswith("/"):
            raise _Unreadable("relative paths depend on apt's working directory")
        try:
            return self.root.resolve(path)
        except RootError as exc:
            raise _Unreadable(exc.problem) from None

    def _load(self, path: str) -> tuple[str, str]:
        """The resolved path and the text of a file apt would open."""
        resolved = self.resolve(path)
        if resolved is None:
            raise _Unreadable("no such file")
        try:
            fd = self.root.open_regular(resolved)
            try:
                data = os.read(fd, MAX_FILE_SIZE + 1)
                while len(data) <= MAX_FILE_SIZE and (more := os.read(fd, MAX_FILE_SIZE)):
                    data += more
            finally:
                os.close(fd)
        except OSError as exc:
            raise _Unreadable(exc.strerror or str(exc)) from None
        if len(data) > MAX_FILE_SIZE:
            raise _Unreadable(f"larger than {MAX_FILE_SIZE} bytes")
        return resolved, data.decode("utf-8", "surrogateescape")

    def read_file(self, path: str, depth: int, origin: tuple[str, int] | None = None) -> None:
        """``ReadConfigFile``; ``origin`` is the (file, line) of the ``#include``."""
        try:
            resolved, text = self._load(path)
        except _Unreadable as why:
            if origin is None:
                raise ConfigError(f"cannot read: {why}", self.root.host(path)) from None
            raise _include_error(origin, path, str(why)) from None
        host = self.root.host(resolved)
        note = f" (included from {origin[0]}:{origin[1]})" if origin else ""
        self.sources.append(path)
        ops = _parse_config(text, host)
        while True:
            try:
                op = next(ops, None)
            except ConfigError as exc:
                raise ConfigError(exc.problem + note, host) from None
            if op is None:
                return
            if op.kind != "include":
                self.apply(op)
            elif depth > MAX_INCLUDE_DEPTH:
                raise ConfigError(f"line {op.line}: too many nested includes{note}", host)
            elif len(op.name) > 2 and op.name.endswith("/"):
                self.read_dir(op.name, depth + 1, (host, op.line))
            else:
                self.read_file(op.name, depth + 1, (host, op.line))

    def read_dir(self, path: str, depth: int, origin: tuple[str, int] | None = None) -> None:
        """``ReadConfigDir``: a missing directory is an error only for ``#include``."""
        try:
            resolved = self.resolve(path)
            if resolved is None or not stat.S_ISDIR(self.root.lstat(resolved).st_mode):
                raise _Unreadable("not a directory")
            names = os.listdir(self.root.host(resolved))
        except (_Unreadable, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            if origin is None:
                return  # apt only warns "Unable to read"
            raise _include_error(origin, path, str(why)) from None
        for name in sorted(n for n in names if accepted_part_name(n)):
            entry = resolved.rstrip("/") + "/" + name
            try:
                target = self.root.resolve(entry)
            except RootError:
                continue  # stat fails: apt notes "not a regular file" and goes on
            # apt tests st_mode & S_IFREG, which sockets pass too (and then fail to open).
            if target is not None and self.root.lstat(target).st_mode & stat.S_IFREG:
                self.read_file(entry, depth)

    def resolve_setting(self, key: str) -> str | None:
        """Where ``FindFile(key)`` points inside the root, or None if nothing is there."""
        path = self.effective.find_file(key)
        if path.startswith("/dev/null"):
            return None
        try:
            return self.resolve(path)
        except _Unreadable as why:
            raise ConfigError(f"{key} {path!r}: {why}") from None


def load_apt_config(
    root: Root,
    overrides: Sequence[str] = (),
    *,
    apt_config_file: str | None = None,
    binary: str | None = "apt-get",
) -> AptConfig:
    """The configuration apt's ``binary`` would run with inside ``root``.

    ``overrides`` are ``KEY=VALUE`` strings as given to ``-o``; a trailing ``::``
    on KEY appends to a list, a plain list KEY gets a value that replaces the
    list for ``get_list``.  ``apt_config_file`` is the ``$APT_CONFIG`` that apt
    would see, as a path inside the root; it is read first and may move
    ``Dir::Etc::parts``.  ``binary`` names the front end: apt sets ``Binary``
    to it and moves the ``Binary::<name>`` subtree to the top (``None``: skip
    that step).  The ``Binary::apt`` defaults compiled into apt are not added.
    """
    loader = _Loader(root)
    if apt_config_file is not None:
        try:
            env_file = loader.resolve(apt_config_file)
        except _Unreadable as why:
            raise ConfigError(f"APT_CONFIG {apt_config_file!r}: {why}") from None
        if env_file is not None:  # apt only warns when it is missing
            loader.read_file(env_file, 0)
    parts = loader.resolve_setting("Dir::Etc::parts")
    if parts is not None:
        loader.read_dir(parts, 0)
    main = loader.resolve_setting("Dir::Etc::main")
    if main is not None and stat.S_ISREG(root.lstat(main).st_mode):
        loader.read_file(main, 0)
    if binary:  # BinarySpecificConfiguration, after the files and before -o
        for tree in (loader.files, loader.effective):
            tree.set("Binary", binary)
            tree.move_subtree(f"Binary::{binary}")
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"override {override!r} must have the form KEY=VALUE")
        for tree in (loader.files, loader.effective):
            tree.set(key, value)
    return AptConfig(loader.files.freeze(), tuple(loader.sources))
