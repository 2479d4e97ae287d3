"""The Hugging Face token for gated bases, read the way clemcore reads it (never written anywhere)."""
from __future__ import annotations

from playpen.api import PlaypenError


def hub_token(model: dict) -> str | None:
    """The ``huggingface`` api_key of clemcore's key.json when the entry sets ``requires_api_key``.

    Without that flag None is returned and the hub client uses ``HF_TOKEN`` or a cached login.
    """
    if not (model.get("model_config") or {}).get("requires_api_key"):
        return None
    from clemcore.backends import KeyRegistry

    registry = KeyRegistry.from_json()
    if "huggingface" not in registry or not registry["huggingface"].has_api_key():
        raise PlaypenError(f"model '{model['model_name']}' requires an api key: add "
                           f"{{\"huggingface\": {{\"api_key\": \"hf_...\"}}}} to key.json "
                           f"(or 'clem register key -n huggingface -v api_key=hf_...')")
    return registry["huggingface"]["api_key"]
