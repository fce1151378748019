"""What the pages show, built from domain objects: plain dataclasses and pure functions, no Reflex, no I/O."""
