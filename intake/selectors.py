"""Reads of intake data, scoped by the user (or, for the gateway, by the calling AE title)."""

from .models import GatewayPeer


def gateway_peer_for(*, ae_title: str, address: str | None) -> GatewayPeer | None:
    """The active peer allowed to send as ``ae_title`` from ``address``; None means refuse the association."""
    peer = GatewayPeer.objects.select_related("site", "site__trial").filter(ae_title=ae_title.strip(),
                                                                            active=True).first()
    if peer is None or (peer.source_address and peer.source_address != address):
        return None
    return peer
