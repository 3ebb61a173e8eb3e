"""maskedlm: pretrain, fine-tune and use bidirectional masked language models.

>>> import maskedlm
>>> model = maskedlm.load("runs/default")  # doctest: +SKIP
>>> model.fill_mask("Return the [MASK] of the list.")  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig

try:  # one source of truth: pyproject.toml's version, as installed
    __version__ = version("maskedlm")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
__all__ = ["ModelConfig", "MaskedLMError", "MaskedLM", "load", "load_task", "__version__"]


def __getattr__(name: str):
    # Lazy: `import maskedlm` stays cheap for the CLI's --help.
    if name in ("load", "MaskedLM"):
        from maskedlm import api
        return getattr(api, name)
    if name == "load_task":
        from maskedlm.tasks import load_task
        return load_task
    raise AttributeError(name)
