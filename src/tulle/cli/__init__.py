"""The `tulle` command line."""
