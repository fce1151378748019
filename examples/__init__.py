"""Example Migrators written with the loom_migrator SDK."""
