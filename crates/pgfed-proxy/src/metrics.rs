//! Prometheus metric handles, registered once so the hot path only touches atomics.
//! Without an installed recorder (tests, library use) every handle is a no-op.

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use pgfed_router::Path;

pub(crate) struct Metrics {
    pub sessions_active: Gauge,
    pub sessions_total: Counter,
    pub sessions_rejected_limit: Counter,
    pub statements_upstream: Counter,
    pub statements_pgfed: Counter,
    pub route_scan: Counter,
    pub route_parsed: Counter,
    pub route_unparsable: Counter,
    pub client_bytes_in: Counter,
    pub client_bytes_out: Counter,
    pub upstream_connect_seconds: Histogram,
    pub upstream_connect_failures: Counter,
    pub cancel_requests: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        describe_gauge!("pgfed_sessions_active", "Client sessions currently open");
        describe_counter!("pgfed_sessions_total", "Client sessions that completed startup");
        describe_counter!("pgfed_sessions_rejected_total", "Connections refused, by reason");
        describe_counter!("pgfed_statements_total", "Query and Parse messages, by route (upstream or pgfed)");
        describe_counter!("pgfed_route_decisions_total", "How routing decided: scan only, full parse, or unparsable");
        describe_counter!("pgfed_client_bytes_received_total", "Bytes received from clients after startup");
        describe_counter!("pgfed_client_bytes_sent_total", "Bytes sent to clients after startup");
        describe_counter!("pgfed_errors_total", "ErrorResponses sent to clients, by SQLSTATE class and source");
        describe_histogram!("pgfed_upstream_connect_seconds", "TCP connect plus TLS handshake to the upstream");
        describe_counter!("pgfed_upstream_connect_failures_total", "Failed connection attempts to the upstream");
        describe_counter!("pgfed_cancel_requests_total", "CancelRequests received, by outcome");
        Self {
            sessions_active: gauge!("pgfed_sessions_active"),
            sessions_total: counter!("pgfed_sessions_total"),
            sessions_rejected_limit: counter!("pgfed_sessions_rejected_total", "reason" => "max_connections"),
            statements_upstream: counter!("pgfed_statements_total", "route" => "upstream"),
            statements_pgfed: counter!("pgfed_statements_total", "route" => "pgfed"),
            route_scan: counter!("pgfed_route_decisions_total", "path" => "scan"),
            route_parsed: counter!("pgfed_route_decisions_total", "path" => "parsed"),
            route_unparsable: counter!("pgfed_route_decisions_total", "path" => "unparsable"),
            client_bytes_in: counter!("pgfed_client_bytes_received_total"),
            client_bytes_out: counter!("pgfed_client_bytes_sent_total"),
            upstream_connect_seconds: histogram!("pgfed_upstream_connect_seconds"),
            upstream_connect_failures: counter!("pgfed_upstream_connect_failures_total"),
            cancel_requests: counter!("pgfed_cancel_requests_total"),
        }
    }

    pub(crate) fn route_path(&self, path: Path) {
        match path {
            Path::Scan => self.route_scan.increment(1),
            Path::Parsed => self.route_parsed.increment(1),
            Path::Unparsable => self.route_unparsable.increment(1),
        }
    }

    /// Errors are rare, so the labelled lookup per error is fine.
    pub(crate) fn error(&self, sqlstate: &str, source: &'static str) {
        let class = sqlstate.get(..2).unwrap_or("??").to_string();
        counter!("pgfed_errors_total", "class" => class, "source" => source).increment(1);
    }
}
