"""The OTAA join server, sans-IO (its only side effect is the registry commit of the session it makes).

A JoinRequest is checked in this order, each failure a `JoinRefused` with its reason: a known DevEUI
(`unknown_dev_eui`), an OTAA device (`not_otaa`), active (`device_inactive`), its JoinEUI (`join_eui_mismatch`), the
MIC under its AppKey (`mic_failed`), and a DevNonce above the last one accepted (`dev_nonce_reused`: LoRaWAN 1.0.4
nodes count DevNonce up and persist it, so a node that rebooted needs no manual flush). Then a new session: the next
JoinNonce, a DevAddr unique in the registry and inside the NetID's address block, session keys derived from the
AppKey, all committed to the registry before the sealed JoinAccept (with the EU868 CFList) is handed out.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

from dos_codecs.crypto import derive_session_keys, seal_join_accept, verify_join_request
from dos_codecs.errors import FrameError
from dos_codecs.lorawan import JoinAccept, JoinRequest
from dos_codecs.mac_commands import build_cf_list

from dos_agent import eu868
from dos_agent.registry import DeviceRecord, Registry

#: NetID type (its top 3 bits) -> bits of the NwkID in the DevAddr (LoRaWAN Backend Interfaces 1.0, table 3).
_NWK_ID_BITS = (6, 6, 9, 11, 12, 13, 15, 17)
MAX_JOIN_NONCE = 0xFFFFFF
RX_DELAY_S = 1


@dataclass(frozen=True, slots=True)
class JoinGranted:
    """A join the server accepted: `device` holds the new session (committed); `phy` is the encrypted JoinAccept."""

    device: DeviceRecord
    dev_nonce: int
    phy: bytes


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """A JoinRequest the server refused. `device` is None for an unknown DevEUI; `last_dev_nonce` is the last one
    accepted (for `dev_nonce_reused`)."""

    reason: str
    detail: str
    dev_eui: str
    dev_nonce: int
    device: DeviceRecord | None = None
    last_dev_nonce: int | None = None


def dev_addr_block(net_id: int) -> tuple[int, int]:
    """(first DevAddr, number of DevAddrs) of the NetID's block: type prefix, NwkID (the NetID's low bits), NwkAddr."""
    if not 0 <= net_id <= 0xFFFFFF:
        raise ValueError(f"NetID {net_id:#x} is not 24 bits")
    net_type = net_id >> 21
    prefix_bits = net_type + 1
    nwk_id_bits = _NWK_ID_BITS[net_type]
    nwk_addr_bits = 32 - prefix_bits - nwk_id_bits
    prefix = ((1 << prefix_bits) - 2) << (32 - prefix_bits)  # net_type ones, then a zero
    nwk_id = net_id & ((1 << nwk_id_bits) - 1)
    return prefix | (nwk_id << nwk_addr_bits), 1 << nwk_addr_bits


class JoinServer:
    """Answers JoinRequests for the OTAA devices of `registry`, handing out DevAddrs of `net_id`."""

    def __init__(self, registry: Registry, net_id: int = 0) -> None:
        self.registry = registry
        self.net_id = net_id
        self._block_start, self._block_size = dev_addr_block(net_id)

    def handle(self, request: JoinRequest, initial_mac_state: str | None = None) -> JoinGranted | JoinRefused:
        """Check a parsed JoinRequest and, if it passes, start and commit the session it asks for.
        `initial_mac_state` is the MAC state (JSON) the new session starts with."""
        dev_eui = request.dev_eui.hex()
        nonce = request.dev_nonce
        device = self.registry.get(dev_eui)
        if device is None:
            return JoinRefused("unknown_dev_eui", f"no device has DevEUI {dev_eui}", dev_eui, nonce)

        def refuse(reason: str, detail: str) -> JoinRefused:
            return JoinRefused(reason, detail, dev_eui, nonce, device, device.last_dev_nonce)

        if device.activation != "otaa" or device.app_key is None:
            return refuse("not_otaa", f"device {dev_eui} is provisioned for {device.activation}, not OTAA")
        if device.state != "active":
            return refuse("device_inactive", f"device {dev_eui} is {device.state}")
        if device.join_eui is not None and request.join_eui.hex() != device.join_eui:
            detail = f"JoinEUI {request.join_eui.hex()} is not the device's {device.join_eui}"
            return refuse("join_eui_mismatch", detail)
        app_key = bytes.fromhex(device.app_key)
        try:
            verify_join_request(request, app_key)
        except FrameError as exc:
            return refuse(exc.reason, exc.detail)
        if device.last_dev_nonce is not None and nonce <= device.last_dev_nonce:
            detail = f"DevNonce {nonce} is not above the last accepted {device.last_dev_nonce}"
            return refuse("dev_nonce_reused", detail)
        join_nonce = device.join_nonce + 1
        if join_nonce > MAX_JOIN_NONCE:
            return refuse("join_nonce_exhausted", "every JoinNonce of this AppKey has been used")
        dev_addr = self._free_dev_addr()
        if dev_addr is None:
            return refuse("dev_addr_exhausted", f"every DevAddr of NetID {self.net_id:06x} is taken")
        nwk_s_key, app_s_key = derive_session_keys(app_key, join_nonce, self.net_id, nonce)
        try:
            device = self.registry.store_join(device, dev_addr, nwk_s_key, app_s_key, nonce, join_nonce,
                                              initial_mac_state)
        except sqlite3.Error as exc:
            return refuse("registry_unwritable", f"the new session could not be stored: {exc}")
        accept = JoinAccept(
            join_nonce=join_nonce, net_id=self.net_id, dev_addr=dev_addr, rx1_dr_offset=0, rx2_data_rate=eu868.RX2_DR,
            rx_delay=RX_DELAY_S, cf_list=build_cf_list(eu868.CFLIST_FREQUENCIES_HZ),
        )
        return JoinGranted(device, nonce, seal_join_accept(accept, app_key))

    def _free_dev_addr(self) -> int | None:
        """A random DevAddr of the block that no device holds (None when all are taken)."""
        taken = self.registry.dev_addrs_in_use()
        for _ in range(64):
            candidate = self._block_start + secrets.randbelow(self._block_size)
            if candidate not in taken:
                return candidate
        for candidate in range(self._block_start, self._block_start + self._block_size):  # an almost full block
            if candidate not in taken:
                return candidate
        return None
