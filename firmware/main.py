# The node's entry point, the file run at boot: it stays source on the board (compiled there at every boot, its code
# kept for the whole run), so all it does is import node_main, precompiled like every other module: boot, then the app.
import node_main  # noqa: F401
