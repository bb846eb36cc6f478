# Image for `cross build --target armv7-…` (see Cross.toml): Debian
# bookworm, so the target's GStreamer is 1.22 like on the boards, with the
# armhf -dev packages installed through multiarch and pkg-config pointed at
# them. Not built or run in CI (no container engine there): ci/cross-aarch64.sh
# proves the same build without one.
FROM debian:bookworm
RUN dpkg --add-architecture armhf \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates gcc libc6-dev gcc-arm-linux-gnueabihf libc6-dev-armhf-cross pkg-config \
      libgstreamer1.0-dev:armhf libgstreamer-plugins-base1.0-dev:armhf \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_SYSROOT_DIR=/ \
    PKG_CONFIG_LIBDIR=/usr/lib/arm-linux-gnueabihf/pkgconfig:/usr/share/pkgconfig
