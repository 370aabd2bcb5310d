"""User-declared run-time needs that no static reading can see (ctypes, plugin loaders, data).

A hints file has one rule per line: a glob over the scanned files' paths, then
one or more ``soname:NAME`` (a library the matching files load by name; it is
resolved with dlopen's rules from the matching object, so its own
dependencies count too) or ``package:NAME`` (a package to keep whenever a file
matches).  ``#`` starts a comment.  Example::

    # GeoDjango loads GDAL and GEOS through ctypes.util.find_library
    */site-packages/django/contrib/gis/*   soname:libgdal.so.32 soname:libgeos_c.so.1
    # TLS clients need the CA bundle, which no ELF file links
    /usr/local/bin/python3*                package:ca-certificates
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from depmin.errors import ConfigError


@dataclass(frozen=True)
class Hint:
    pattern: str
    sonames: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        """The glob matches the whole root-relative path, or the base name if it has no '/'."""
        if "/" not in self.pattern:
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], self.pattern)
        return fnmatch.fnmatchcase(path, self.pattern)


def parse_hints(text: str, name: str) -> tuple[Hint, ...]:
    hints: list[Hint] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, *items = line.split()
        sonames: list[str] = []
        packages: list[str] = []
        for item in items:
            kind, sep, value = item.partition(":")
            if not sep or not value or kind not in ("soname", "package"):
                raise ConfigError(
                    f"line {number}: expected soname:NAME or package:NAME, got {item!r}", name
                )
            (sonames if kind == "soname" else packages).append(value)
        if not items:
            raise ConfigError(f"line {number}: a glob with nothing to add", name)
        hints.append(Hint(pattern, tuple(sonames), tuple(packages)))
    return tuple(hints)


def load_hints(path: str) -> tuple[Hint, ...]:
    """Read a hints file from the host (it describes the image, it is not part of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_hints(f.read(), path)
    except OSError as exc:
        raise ConfigError(f"cannot read hints file: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise ConfigError("hints file is not UTF-8", path) from None
