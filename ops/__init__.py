"""Operations: health and readiness, Prometheus metrics, and the admin dashboards."""
