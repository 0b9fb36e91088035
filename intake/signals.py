"""Signals intake sends, always after the transaction that stored the object has committed.

Higher apps (de-identification) connect receivers that only enqueue their own
task; intake imports none of them.

- ``instance_received(sender=Instance, instance_id=int)``: one stored instance, raw bytes in quarantine.
"""

from django.dispatch import Signal

instance_received = Signal()
