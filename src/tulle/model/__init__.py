"""Resource model: kinds, specs, validation and the mesh snapshot."""
