"""Warnings about what a plan keeps but cannot make work alone, or keeps at a visible cost.

A package kept for its library may Recommend or Suggest a plugin or config
package (libldap-2.5-0 → libldap-common, libsasl2 → libsasl2-modules) that
``RecommendsImportant=false`` purges; a TLS client is useless without the CA
bundle, which no ELF file links.  Both are said plainly, with the package to
``--keep`` and the apt option responsible.

The other way round, depmin keeps everything the software loads and what apt's
own settings keep, so nothing breaks by default; two choices that images often
make differently are said as one warning each, with the flag that makes them: a
single loadable module that alone keeps several MiB of packages (CPython's
``_tkinter`` keeps Tk and X11), and packages kept only because a kept package
Recommends them while the root's apt keeps Recommends (its default).
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import replace

from depmin.debian.pkggraph import RECOMMENDS, SUGGESTS, PackageGraph
from depmin.debian.plan import Plan, make_plan
from depmin.loader.needs import Analysis
from depmin.owners import Requirements

#: Sonames of TLS libraries whose users need a CA bundle.
TLS_SONAMES = re.compile(r"^lib(ssl|gnutls|mbedtls|wolfssl|nss3|curl(-gnutls)?)\.so(\.|$)")
CA_PACKAGE = "ca-certificates"
#: A module that alone keeps at least this much (KiB of Installed-Size) is worth a warning.
HEAVY_MODULE_KIB = 4096


def _size(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _listed(graph: PackageGraph, keys: AbstractSet[str], most: int = 6) -> str:
    names = sorted(graph.display_name(k) for k in keys)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def heavy_modules(analysis: Analysis, req: Requirements, graph: PackageGraph, plan: Plan) -> list[str]:
    """Modules (objects dlopened by path, such as a Python extension) that alone keep a lot.

    Leaving a module out is the user's decision (the official python image leaves out
    ``_tkinter``); depmin keeps it by default and says what it costs.
    """
    modules = {res.main for res in analysis.roots if res.objects[0].elf.interp is None
               and res.objects[0].elf.type == 3}  # fmt: skip
    only: dict[str, set[str]] = {}
    for need in req.packages:
        if len(need.files) == 1 and need.files[0] in modules:
            key = graph.lookup(need.package)
            if key is not None and key in plan.kept and key not in plan.baseline:
                only.setdefault(need.files[0], set()).add(key)
    out = []
    for module, keys in sorted(only.items()):
        without = make_plan(graph, [k for k in plan.required if k not in keys], plan.baseline, plan.policy)
        cost = plan.kept - without.kept
        kib = sum(graph.nodes[k].installed_size for k in cost)
        if kib >= HEAVY_MODULE_KIB:
            base = module.rsplit("/", 1)[-1]
            out.append(
                f"{module} alone keeps {len(cost)} packages ({_size(kib)}: {_listed(graph, cost)}); if the "
                f"image does not need it, add --exclude '{base}'"
            )
    return out


def recommends_only(graph: PackageGraph, plan: Plan) -> list[str]:
    """Packages kept only because a kept package Recommends them, where apt keeps Recommends."""
    if not plan.policy.recommends_important:
        return []
    policy = replace(plan.policy, recommends_important=False)
    stricter = make_plan(graph, plan.required, plan.baseline, policy)
    extra = plan.kept - stricter.kept
    if not extra:
        return []
    kib = sum(graph.nodes[k].installed_size for k in extra)
    return [
        f"{len(extra)} packages ({_size(kib)}) stay only because a kept package Recommends them "
        f"({_listed(graph, extra)}): APT::AutoRemove::RecommendsImportant is true in this root (apt's "
        "default); to purge them, add -o APT::AutoRemove::RecommendsImportant=false"
    ]


def plan_caveats(analysis: Analysis, req: Requirements, graph: PackageGraph, plan: Plan) -> list[str]:
    out: list[str] = []
    garbage = plan.marking.garbage
    watched = set(plan.required) | set(plan.keep)
    for key in sorted(watched):
        if key in garbage:
            continue
        for e in graph.edges.get(key, ()):
            if e.kind in (RECOMMENDS, SUGGESTS) and e.target in garbage:
                opt = plan.policy.config_key(e.kind)
                out.append(
                    f"{graph.display_name(key)} {e.kind} {graph.display_name(e.target)}, which "
                    f"would be purged ({opt} is false); keep it with --keep "
                    f"{graph.display_name(e.target)} if the software needs it"
                )
    tls = sorted({n for lib in analysis.libraries for n in lib.names if TLS_SONAMES.match(n)})
    if tls:
        ca = graph.lookup(CA_PACKAGE)
        if ca is None:
            out.append(
                f"the software links {', '.join(tls)} but {CA_PACKAGE} is not installed: "
                "TLS certificate checks will fail"
            )
        elif ca in garbage:
            out.append(
                f"the software links {', '.join(tls)} and {CA_PACKAGE} would be purged: "
                f"keep it with --keep {CA_PACKAGE}"
            )
    for file, names, path in analysis.suggested:
        where = f"found at {path}" if path else "not found"
        out.append(f"{file} suggests dlopen of {names} ({where}); not kept")
    out += heavy_modules(analysis, req, graph, plan)
    out += recommends_only(graph, plan)
    return out
