"""Reading InfluxDB: one InfluxQL ``/query`` client (quoting, auth, TLS, paging, no redirects)."""
