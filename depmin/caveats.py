"""Warnings about what a plan keeps but cannot make work on its own (issue: runtime needs).

A package kept for its library may Recommend or Suggest a plugin or config
package (libldap-2.5-0 → libldap-common, libsasl2 → libsasl2-modules) that
``RecommendsImportant=false`` purges; a TLS client is useless without the CA
bundle, which no ELF file links.  Both are said plainly, with the package to
``--keep`` and the apt option responsible.
"""

from __future__ import annotations

import re

from depmin.debian.pkggraph import RECOMMENDS, SUGGESTS, PackageGraph
from depmin.debian.plan import Plan
from depmin.loader.needs import Analysis

#: Sonames of TLS libraries whose users need a CA bundle.
TLS_SONAMES = re.compile(r"^lib(ssl|gnutls|mbedtls|wolfssl|nss3|curl(-gnutls)?)\.so(\.|$)")
CA_PACKAGE = "ca-certificates"


def plan_caveats(analysis: Analysis, graph: PackageGraph, plan: Plan) -> list[str]:
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
    return out
