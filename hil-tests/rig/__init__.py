"""dos_rig: the HIL rig, the emulated world the real firmware runs in.

Virtual clock (`clock`), SX1276 register model (`sx1276`), the air (`air`, `airtime`), sensors and lamp (`sensors`), the
board's wiring (`hardware`), the ROM link (`link`, board side in `rom/`), board processes on ptys (`board`), the Semtech
UDP packet forwarder of an emulated gateway (`forwarder`), all composed by `rig.Rig`; `cli` is `dos-edge rig`.
"""
