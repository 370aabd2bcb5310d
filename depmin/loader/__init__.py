"""The loader half: what glibc's ld.so would load, read statically from the files.

Nothing here knows about packages.  ``elf`` reads objects, ``arch`` holds the
per-architecture constants, ``ldcache``/``ldconf`` read the loader's
configuration, ``resolve`` simulates a load (split along glibc's own steps:
``dst``, ``hwcaps``, ``verify``, ``search``, ``deps``), ``scan`` finds objects in
trees and ``needs`` resolves each in the context it is really loaded in.
"""
