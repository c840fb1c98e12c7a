"""Other trainers a spec can run on (the default backend is this package's own trainer)."""
