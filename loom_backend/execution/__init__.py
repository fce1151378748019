"""Runs on Temporal: the workflow, its activities, the worker, the engine adapter and the embedded dev server."""
