"""xDS: translate the mesh snapshot into Envoy resources and serve them over ADS."""
