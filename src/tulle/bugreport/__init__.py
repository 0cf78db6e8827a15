"""`tulle bug-report`: one archive with what it takes to debug a mesh, secrets redacted."""
