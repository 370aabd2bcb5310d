"""Renderings of a run: JSON documents and text (``documents``), ldd's format (``ldd``),
explanations (``why``) and the whole graph (``graph``).  Nothing here computes an answer."""
