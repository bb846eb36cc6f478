# Image for `cross build --target aarch64-…` (see Cross.toml): Debian
# bookworm, so the target's GStreamer is 1.22 like on the boards, with the
# arm64 -dev packages installed through multiarch and pkg-config pointed at
# them. Not built or run in CI (no container engine there): ci/cross-aarch64.sh
# proves the same build without one.
FROM debian:bookworm
RUN dpkg --add-architecture arm64 \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross pkg-config \
      libgstreamer1.0-dev:arm64 libgstreamer-plugins-base1.0-dev:arm64 \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_SYSROOT_DIR=/ \
    PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
