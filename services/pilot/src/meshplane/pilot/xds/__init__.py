"""The xDS transport: ADS (SotW and Delta) streams, per-connection state, debounce and push queue."""
