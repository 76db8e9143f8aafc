# pgfed server image. Native equivalent: cargo build --release -p pgfed (see README).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p pgfed --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pgfed /usr/local/bin/pgfed
COPY config/pgfed.toml /etc/pgfed/pgfed.toml
USER nobody
EXPOSE 6432 9187
ENTRYPOINT ["/usr/local/bin/pgfed"]
