# syntax=docker/dockerfile:1
#
# The official python image's Dockerfile (3.11/slim-bookworm, docker-library/python at 4f07059567fa),
# with one change: the ldd | awk | dpkg-query | apt-mark pipeline and its purge are
# replaced by one depmin line.  Build it from depmin's top directory:
#
#   docker build -f examples/python-3.11-slim-bookworm.Dockerfile -t python-depmin .
#
# scripts/e2e runs these RUN steps, unchanged but for the "# e2e:" sections, in a
# debootstrap root: "download" is replaced by a copy of Debian's .orig tarball (the
# same upstream source; this machine cannot reach python.org), "optimizations" is left
# out for time (PGO and LTO), "depmin" is the replacement and "official" (comment lines,
# which Docker drops) is the official pipeline the e2e runs beside it.

# depmin as one file (scripts/build-zipapp).  Nothing of this stage reaches the image:
# the RUN step bind-mounts the file.
FROM python:3.13-slim-trixie AS depmin
COPY depmin /src/depmin
COPY scripts/build-zipapp /src/scripts/build-zipapp
RUN /src/scripts/build-zipapp /depmin.pyz

FROM debian:bookworm-slim

# ensure local python is preferred over distribution python
ENV PATH /usr/local/bin:$PATH

# cannot remove LANG even though https://bugs.python.org/issue19846 is fixed
# last attempted removal of LANG broke many users:
# https://github.com/docker-library/python/pull/570
ENV LANG C.UTF-8

# runtime dependencies
RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		ca-certificates \
		netbase \
		tzdata \
	; \
	rm -rf /var/lib/apt/lists/*

ENV GPG_KEY A035C8C19219BA821ECEA86B64E628F8D684696D
ENV PYTHON_VERSION 3.11.15
ENV PYTHON_SHA256 272179ddd9a2e41a0fc8e42e33dfbdca0b3711aa5abf372d3f2d51543d09b625

RUN --mount=type=bind,from=depmin,source=/depmin.pyz,target=/tmp/depmin.pyz \
	set -eux; \
	\
	savedAptMark="$(apt-mark showmanual)"; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		dpkg-dev \
		gcc \
		gnupg \
		libbluetooth-dev \
		libbz2-dev \
		libc6-dev \
		libdb-dev \
		libffi-dev \
		libgdbm-dev \
		liblzma-dev \
		libncursesw5-dev \
		libreadline-dev \
		libsqlite3-dev \
		libssl-dev \
		make \
		tk-dev \
		uuid-dev \
		wget \
		xz-utils \
		zlib1g-dev \
	; \
	\
# e2e: download
	wget -O python.tar.xz "https://www.python.org/ftp/python/${PYTHON_VERSION%%[a-z]*}/Python-$PYTHON_VERSION.tar.xz"; \
	echo "$PYTHON_SHA256 *python.tar.xz" | sha256sum -c -; \
	wget -O python.tar.xz.asc "https://www.python.org/ftp/python/${PYTHON_VERSION%%[a-z]*}/Python-$PYTHON_VERSION.tar.xz.asc"; \
	GNUPGHOME="$(mktemp -d)"; export GNUPGHOME; \
	gpg --batch --keyserver hkps://keys.openpgp.org --recv-keys "$GPG_KEY"; \
	gpg --batch --verify python.tar.xz.asc python.tar.xz; \
	gpgconf --kill all; \
	rm -rf "$GNUPGHOME" python.tar.xz.asc; \
# e2e: end
	mkdir -p /usr/src/python; \
	tar --extract --directory /usr/src/python --strip-components=1 --file python.tar.xz; \
	rm python.tar.xz; \
	\
	cd /usr/src/python; \
	gnuArch="$(dpkg-architecture --query DEB_BUILD_GNU_TYPE)"; \
	./configure \
		--build="$gnuArch" \
		--enable-loadable-sqlite-extensions \
# e2e: optimizations
		--enable-optimizations \
# e2e: end
		--enable-option-checking=fatal \
		--enable-shared \
# e2e: optimizations
		$(test "${gnuArch%%-*}" != 'riscv64' && echo '--with-lto') \
# e2e: end
		--with-ensurepip \
	; \
	nproc="$(nproc)"; \
	EXTRA_CFLAGS="$(dpkg-buildflags --get CFLAGS)"; \
	LDFLAGS="$(dpkg-buildflags --get LDFLAGS)"; \
	LDFLAGS="${LDFLAGS:-} -Wl,--strip-all"; \
	make -j "$nproc" \
		"EXTRA_CFLAGS=${EXTRA_CFLAGS:-}" \
		"LDFLAGS=${LDFLAGS:-}" \
	; \
# https://github.com/docker-library/python/issues/784
# prevent accidental usage of a system installed libpython of the same version
	rm python; \
	make -j "$nproc" \
		"EXTRA_CFLAGS=${EXTRA_CFLAGS:-}" \
		"LDFLAGS=${LDFLAGS:-} -Wl,-rpath='\$\$ORIGIN/../lib'" \
		python \
	; \
	make install; \
	\
	cd /; \
	rm -rf /usr/src/python; \
	\
	find /usr/local -depth \
		\( \
			\( -type d -a \( -name test -o -name tests -o -name idle_test \) \) \
			-o \( -type f -a \( -name '*.pyc' -o -name '*.pyo' -o -name 'libpython*.a' \) \) \
		\) -exec rm -rf '{}' + \
	; \
	\
	ldconfig; \
	\
# e2e: depmin
# depmin replaces the pipeline: it marks the minimal list, checks it with apt-get -s,
# purges, and verifies what the purge left (see depmin's README, "In an image build")
	python3 /tmp/depmin.pyz apply --baseline "$savedAptMark" --purge --verify; \
# e2e: official
#	apt-mark auto '.*' > /dev/null; \
#	apt-mark manual $savedAptMark; \
#	find /usr/local -type f -executable -not \( -name '*tkinter*' \) -exec ldd '{}' ';' \
#		| awk '/=>/ { so = $(NF-1); if (index(so, "/usr/local/") == 1) { next }; gsub("^/(usr/)?", "", so); printf "*%s\n", so }' \
#		| sort -u \
#		| xargs -rt dpkg-query --search \
# https://manpages.debian.org/bookworm/dpkg/dpkg-query.1.en.html#S (we ignore diversions and it'll be really unusual for more than one package to provide any given .so file)
#		| awk 'sub(":$", "", $1) { print $1 }' \
#		| sort -u \
#		| xargs -r apt-mark manual \
#	; \
#	apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false; \
# e2e: end
	rm -rf /var/lib/apt/lists/*; \
	\
	export PYTHONDONTWRITEBYTECODE=1; \
	python3 --version; \
	\
	pip3 install \
		--disable-pip-version-check \
		--no-cache-dir \
		--no-compile \
		'setuptools==79.0.1' \
		# https://github.com/docker-library/python/issues/1023
		'wheel<0.46' \
	; \
	pip3 --version

# make some useful symlinks that are expected to exist ("/usr/local/bin/python" and friends)
RUN set -eux; \
	for src in idle3 pip3 pydoc3 python3 python3-config; do \
		dst="$(echo "$src" | tr -d 3)"; \
		[ -s "/usr/local/bin/$src" ]; \
		[ ! -e "/usr/local/bin/$dst" ]; \
		ln -svT "$src" "/usr/local/bin/$dst"; \
	done

CMD ["python3"]
