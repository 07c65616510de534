"""The cross-domain few-shot protocol: config, plan, data, backbones, methods, training, run.

``torchcross run experiment.toml`` drives it from the command line;
[`run_protocol()`][run_protocol]
from Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.protocol.config import ProtocolConfig as ProtocolConfig
    from torchcross.protocol.config import config_from_dict as config_from_dict
    from torchcross.protocol.config import config_to_dict as config_to_dict
    from torchcross.protocol.config import config_to_toml as config_to_toml
    from torchcross.protocol.config import load_config as load_config
    from torchcross.protocol.fingerprint import Reads as Reads
    from torchcross.protocol.plan import ProtocolPlan as ProtocolPlan
    from torchcross.protocol.plan import check_protocol as check_protocol
    from torchcross.protocol.registry import MethodContext as MethodContext
    from torchcross.protocol.registry import get_method as get_method
    from torchcross.protocol.registry import method_names as method_names
    from torchcross.protocol.registry import register_method as register_method
    from torchcross.protocol.registry import unregister_method as unregister_method
    from torchcross.protocol.run import ProtocolResult as ProtocolResult
    from torchcross.protocol.run import run_protocol as run_protocol
    from torchcross.protocol.variants import MetaLearnVariant as MetaLearnVariant

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
    "config_to_toml": "config",
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
