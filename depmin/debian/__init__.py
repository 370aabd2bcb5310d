"""The Debian half: what dpkg records and what apt would do, read from a root's files.

Nothing here knows about ELF.  ``deb822``/``debversion`` are the formats,
``dpkg`` the database (ownership safe under merged /usr and diversions),
``archive`` the package lists, ``aptconf`` apt's configuration, ``pkggraph`` the
relations apt follows, ``autoremove`` apt's mark and sweep, ``plan`` the minimal
marks; ``aptstate`` and ``aptbridge`` are the edges that read and change apt's
state or ask apt itself.
"""
