# wharf's container image, a drop-in for registry:2: it listens on :5000, keeps data in
# /var/lib/registry, serves /etc/docker/registry/config.yml (registry:2's stock file), honours
# REGISTRY_* variables and takes registry:2's commands (`IMAGE serve CONFIG`,
# `docker run --rm --entrypoint htpasswd IMAGE -Bbn USER PASS`).
#
# This file builds everything in a Rust container, for machines with internet access. Without
# it, `scripts/image.sh [TAG]` builds the same final stage from a binary cargo builds locally.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# A static binary (glibc linked in), laid out in /rootfs as the final image holds it.
RUN scripts/image.sh --rootfs /rootfs

# The final stage. scripts/image.sh uses it as it is, with /rootfs from its own build.
FROM scratch
COPY --from=build /rootfs/ /
# The data directory belongs to the image's unprivileged user (65532, `wharf`), and so does
# every named volume Docker creates from it; the entrypoint runs the server as that user
# where the volume, the files the configuration names and the port allow, and as root
# otherwise (a host directory that belongs to root, as registry:2 set-ups often use).
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME ["/var/lib/registry"]
EXPOSE 5000
# scratch has no curl: the binary asks the local server for GET /v2/ itself.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 CMD ["/usr/bin/wharf", "healthcheck"]
ENTRYPOINT ["/entrypoint"]
CMD ["/etc/docker/registry/config.yml"]
