# simbulk in a container: the binary alone, as a non-root user.
#   docker build -t simbulk:1 .
#   docker run --rm -v "$PWD:/data" -e SIMBULK_PROFILE … simbulk:1 run /data/job.csv --resume
# Times given to --until / --window are the container's local time: set TZ (UTC otherwise).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin simbulk

# glibc, CA certificates and time zones, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/simbulk /usr/local/bin/simbulk
USER nonroot:nonroot
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/simbulk"]
CMD ["--help"]
