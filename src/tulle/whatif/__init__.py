"""`tulle what-if`: one call through the config in force, evaluated without sending it."""
