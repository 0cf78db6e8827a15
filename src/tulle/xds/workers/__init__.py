"""xDS worker processes: the ADS streams, fanned out over more than one core."""
