"""The cross-domain few-shot protocol: config, plan, data, backbones, methods, training, run.

``torchcross run experiment.toml`` drives it from the command line;
[`run_protocol()`][torchcross.protocol.run.run_protocol]
from Python.
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ProtocolPlan": "plan",
    "ProtocolResult": "run",
    "check_protocol": "plan",
    "run_protocol": "run",
    "ProtocolConfig": "config",
    "load_config": "config",
    "config_from_dict": "config",
    "config_to_dict": "config",
    "MethodContext": "registry",
    "MetaLearnVariant": "variants",
    "Reads": "fingerprint",
    "get_method": "registry",
    "method_names": "registry",
    "register_method": "registry",
    "unregister_method": "registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
