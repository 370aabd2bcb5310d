# syntax=docker/dockerfile:1
#
# The official redis image (8.6, debian trixie; docker-library/redis, as its published
# build history shows it), with the ldd | awk | dpkg-query | apt-mark pipeline and its
# purge replaced by depmin.  This image has no Python: depmin runs on Debian's
# python3-minimal, added to the build dependencies, and depmin's own purge removes it
# again (apply --purge --verify checks the result in the same process, so nothing is
# left of depmin or of the interpreter).  Build it from depmin's top directory:
#
#   docker build -f examples/redis-trixie.Dockerfile -t redis-depmin .
#
# scripts/e2e runs these RUN steps, unchanged but for the "# e2e:" sections: "download"
# becomes a copy of Debian's .orig tarball of redis (this machine reaches neither
# github.com nor download.redis.io), and "modules" takes the Dockerfile's own branch
# for architectures without modules (BUILD_WITH_MODULES=no: the modules need a Rust
# toolchain and git clones from github.com).  "official" is the official pipeline,
# as comment lines that Docker drops.

FROM python:3.13-slim-trixie AS depmin
COPY depmin /src/depmin
COPY scripts/build-zipapp /src/scripts/build-zipapp
RUN /src/scripts/build-zipapp /depmin.pyz

FROM debian:trixie-slim

# add our user and group first to make sure their IDs get assigned consistently, regardless of whatever dependencies get added
RUN set -eux; \
	groupadd -r -g 999 redis; \
	useradd -r -g redis -u 999 redis

# runtime dependencies
RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		tzdata \
	; \
	rm -rf /var/lib/apt/lists/*

ARG REDIS_DOWNLOAD_URL=https://github.com/redis/redis/archive/refs/tags/8.6.1.tar.gz
ARG REDIS_DOWNLOAD_SHA=88ff5661160bf4b12aba2dfc579b131c202e75a3ac1f0b1d06db05a9929d5a89

RUN --mount=type=bind,from=depmin,source=/depmin.pyz,target=/tmp/depmin.pyz \
	set -eux; \
	\
	savedAptMark="$(apt-mark showmanual)"; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		ca-certificates \
		wget \
		\
		dpkg-dev \
		gcc \
		g++ \
		libc6-dev \
		libssl-dev \
		make \
# depmin runs on the smallest Debian Python; its own purge removes it again
		python3-minimal \
	; \
	\
	arch="$(dpkg --print-architecture | awk -F- '{ print $NF }')"; \
# e2e: modules
	case "$arch" in \
		'amd64') export BUILD_WITH_MODULES=yes; export INSTALL_RUST_TOOLCHAIN=yes; export DISABLE_WERRORS=yes ;; \
		'arm64') export BUILD_WITH_MODULES=yes; export INSTALL_RUST_TOOLCHAIN=yes; export DISABLE_WERRORS=yes ;; \
		*) echo >&2 "Modules are NOT supported! unsupported architecture: '$arch'"; export BUILD_WITH_MODULES=no ;; \
	esac; \
# e2e: end
	if [ "$BUILD_WITH_MODULES" = "yes" ]; then \
		apt-get update; \
		apt-get install -y --no-install-recommends \
			git cmake python3 python3-pip python3-venv python3-dev unzip rsync clang automake autoconf libtool g++; \
	fi; \
	\
	rm -rf /var/lib/apt/lists/*; \
	\
# e2e: download
	wget -O redis.tar.gz "$REDIS_DOWNLOAD_URL"; \
	echo "$REDIS_DOWNLOAD_SHA *redis.tar.gz" | sha256sum -c -; \
# e2e: end
	mkdir -p /usr/src/redis; \
	tar -xzf redis.tar.gz -C /usr/src/redis --strip-components=1; \
	rm redis.tar.gz; \
	\
# disable Redis protected mode as it is unnecessary in context of Docker
	grep -E '^ *createBoolConfig[(]"protected-mode",.*, *1 *,.*[)],$' /usr/src/redis/src/config.c; \
	sed -ri 's!^( *createBoolConfig[(]"protected-mode",.*, *)1( *,.*[)],)$!\10\2!' /usr/src/redis/src/config.c; \
	grep -E '^ *createBoolConfig[(]"protected-mode",.*, *0 *,.*[)],$' /usr/src/redis/src/config.c; \
	\
# the bundled jemalloc is configured as Debian builds it, for the build architecture
	gnuArch="$(dpkg-architecture --query DEB_BUILD_GNU_TYPE)"; \
	extraJemallocConfigureFlags="--build=$gnuArch"; \
	case "${arch##*-}" in \
		amd64 | i386 | x32) extraJemallocConfigureFlags="$extraJemallocConfigureFlags --with-lg-page=12" ;; \
		*) extraJemallocConfigureFlags="$extraJemallocConfigureFlags --with-lg-page=16" ;; \
	esac; \
	extraJemallocConfigureFlags="$extraJemallocConfigureFlags --with-lg-hugepage=21"; \
	grep -F 'cd jemalloc && ./configure ' /usr/src/redis/deps/Makefile; \
	sed -ri 's!cd jemalloc && ./configure !&'"$extraJemallocConfigureFlags"' !' /usr/src/redis/deps/Makefile; \
	grep -F "cd jemalloc && ./configure $extraJemallocConfigureFlags " /usr/src/redis/deps/Makefile; \
	\
	export BUILD_TLS=yes; \
	make -C /usr/src/redis -j "$(nproc)" all; \
	make -C /usr/src/redis install; \
	\
	serverMd5="$(md5sum /usr/local/bin/redis-server | cut -d' ' -f1)"; export serverMd5; \
	find /usr/local/bin/redis* -maxdepth 0 \
		-type f -not -name redis-server \
		-exec sh -eux -c ' \
			md5="$(md5sum "$1" | cut -d" " -f1)"; \
			test "$md5" = "$serverMd5"; \
		' -- '{}' ';' \
		-exec ln -svfT 'redis-server' '{}' ';' \
	; \
	\
	make -C /usr/src/redis distclean; \
	rm -r /usr/src/redis; \
	\
# e2e: depmin
# depmin replaces the pipeline: it marks the minimal list, checks it with apt-get -s,
# purges (python3-minimal included) and verifies what the purge left, in one process
	python3 /tmp/depmin.pyz apply --baseline "$savedAptMark" --purge --verify; \
# e2e: official
#	apt-mark auto '.*' > /dev/null; \
#	[ -z "$savedAptMark" ] || apt-mark manual $savedAptMark > /dev/null; \
#	find /usr/local -type f -executable -exec ldd '{}' ';' \
#		| awk '/=>/ { so = $(NF-1); if (index(so, "/usr/local/") == 1) { next }; gsub("^/(usr/)?", "", so); printf "*%s\n", so }' \
#		| sort -u \
#		| xargs -r dpkg-query --search \
#		| cut -d: -f1 \
#		| sort -u \
#		| xargs -r apt-mark manual \
#	; \
#	apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false; \
# e2e: end
	rm -rf /var/cache/debconf/*; \
	\
	redis-cli --version; \
	redis-server --version

RUN mkdir /data && chown redis:redis /data
WORKDIR /data

EXPOSE 6379
CMD ["redis-server"]
