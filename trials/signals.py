"""Signals the trials app sends for the apps above it (which trials may not import).

- ``demo_loaded(sender=Trial, trial_id=int)``: ``trials.demo.demo_load`` has created the demo trial, its
  sites, users and protocol version; sent once that has committed. Apps above add their own part of the
  demo (reads its reader pool, deid the demo's de-identification profile). Receivers must be idempotent.
"""

from django.dispatch import Signal

demo_loaded = Signal()
