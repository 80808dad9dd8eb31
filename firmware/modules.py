"""Unloading a module the node needs only now and then (MAC commands, the downlink decoder): the code of a loaded
module stays in the heap, so once such a module has done its work it is forgotten, and importing it again the next
time loads it anew from flash."""
import sys


def unload(name):
    """Forget module `name` (and the attribute of that name on its package) so that the GC can free its code once no
    function of it is in use; nothing happens if it is not loaded."""
    sys.modules.pop(name, None)
    package, _, attr = name.rpartition(".")
    parent = sys.modules.get(package)
    if parent is not None and attr in parent.__dict__:
        delattr(parent, attr)
