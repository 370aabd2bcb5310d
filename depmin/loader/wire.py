"""Loads computed in another process, sent back compactly and rebuilt here.

A big tree's loads repeat their records (see :class:`~depmin.loader.verify.LoaderFiles`):
2,400 loads of /usr hold 60,000 requests but 8,500 distinct ones.  Pickling the
records themselves costs more than computing them, so a load travels as indexes
into two tables of distinct records, each record a plain tuple without its ELF:
the object at a realpath is the ELF read there, which the two processes share
from before the fork, or which the child read since and sends along.  Rebuilding
shares the records with this process's own loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional  # the alias is evaluated: Python 3.9 has no str | None there

from depmin.errors import ElfError
from depmin.loader.arch import all_arches
from depmin.loader.elf import ElfFile
from depmin.loader.linkmap import LoadedObject, LoadResult
from depmin.loader.verify import LoaderFiles

_Object = tuple[object, ...]  # LoadedObject's fields but the ELF
_Request = tuple[object, ...]  # Request's fields
# (main, arch name or None, static, notes, interpreter referenced, object rows, request rows)
_Load = tuple[str, Optional[str], bool, tuple[str, ...], bool, tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class PackedLoads:
    """Loads by the path they were asked for, as indexes into the tables of distinct records."""

    objects: tuple[_Object, ...]
    requests: tuple[_Request, ...]
    loads: tuple[tuple[str, _Load], ...]
    elves: tuple[ElfFile, ...] = ()  # read by the sender after the fork


def pack_loads(loads: Mapping[str, LoadResult], elves: Sequence[ElfFile] = ()) -> PackedLoads:
    """``elves``: the ELF objects the sender read that the receiver may not have."""
    objects: list[_Object] = []
    requests: list[_Request] = []
    obj_at: dict[int, int] = {}  # id() of a record -> its row (the records outlive this call)
    req_at: dict[int, int] = {}
    out: list[tuple[str, _Load]] = []
    for key, res in loads.items():
        objs = []
        for o in res.objects:
            row = obj_at.get(id(o))
            if row is None:
                row = obj_at[id(o)] = len(objects)
                objects.append((o.index, o.path, o.realpath, o.names, o.loader, o.step))
            objs.append(row)
        reqs = []
        for r in res.requests:
            row = req_at.get(id(r))
            if row is None:
                row = req_at[id(r)] = len(requests)
                requests.append((r.requester, r.name, r.kind, r.outcome, r.step, r.target, r.tried,
                                 r.problem, r.path, r.expanded))  # fmt: skip
            reqs.append(row)
        arch = res.arch.name if res.arch is not None else None
        out.append((key, (res.main, arch, res.static, res.notes, res.interpreter_referenced,
                          tuple(objs), tuple(reqs))))  # fmt: skip
    return PackedLoads(tuple(objects), tuple(requests), tuple(out), tuple(elves))


def unpack_loads(packed: PackedLoads, files: LoaderFiles) -> dict[str, LoadResult]:
    """The loads, their records shared with ``files``' own.  Left out (for the caller to
    compute again): a load whose ELF this process read differently (the file changed
    between the two reads) or cannot read any more."""
    arches = {a.name: a for a in all_arches()}
    if files.settings.arch is not None:
        arches[files.settings.arch.name] = files.settings.arch
    mine = files.known()
    changed = {e.path for e in packed.elves if e.path in mine and mine[e.path] != e}
    files.know(packed.elves)  # where this process has not read them
    objects: list[LoadedObject | None] = []
    for key in packed.objects:
        try:
            elf = None if key[2] in changed else files.read_elf(key[2])  # type: ignore[arg-type]
        except ElfError:
            elf = None
        objects.append(files.shared_object(key, elf) if elf is not None else None)
    requests = [files.shared_request(key) for key in packed.requests]
    out: dict[str, LoadResult] = {}
    for path, (main, arch, static, notes, referenced, objs, reqs) in packed.loads:
        loaded = tuple(objects[i] for i in objs)
        if None in loaded:
            continue
        arch_of = arches[arch] if arch is not None else None
        reqs_of = tuple(requests[i] for i in reqs)
        out[path] = LoadResult(main, loaded, reqs_of, arch_of, static, notes, referenced)  # type: ignore[arg-type]
    return out
