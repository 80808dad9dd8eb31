"""Reading the node's state file at boot (store.Store's constructor loads this module for it and unloads it after):
the code that runs once per boot does not stay in the heap."""
import json


def read_state(path):
    """(the state dict, what went wrong reading it or None) from `path`, or from `path`.tmp when a write was cut short
    before its rename; an empty dict when neither holds a JSON object."""
    problem = None
    for candidate in (path, path + ".tmp"):
        try:
            with open(candidate) as f:
                data = json.load(f)
        except OSError:
            continue
        except ValueError:
            problem = candidate + " is not valid JSON"
            continue
        if isinstance(data, dict):
            return data, problem
        problem = candidate + " does not hold an object"
    return {}, problem
