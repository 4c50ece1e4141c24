"""The structure of a functional Keras model, read from its config: who feeds whom.

Used by the equalization transforms (pipeline/quantize/equalize.py) to find where a rescaling
is valid; works on nested functional models (each graph is read separately).
"""

from __future__ import annotations

from dataclasses import dataclass


def copy_model(model):
    """An independent copy (nested models cloned too) with the same weights and layer names."""
    import keras

    clone = keras.models.clone_model(model, recursive=True)
    clone.set_weights(model.get_weights())
    if [w.path for w in clone.weights] != [w.path for w in model.weights]:
        raise RuntimeError("clone_model changed weight paths; refusing to equalize a different architecture")
    return clone


def functional_models(model):
    """The model and every functional model nested in it (depth first)."""
    out = [model]
    for layer in model.layers:
        if is_functional(layer):
            out.extend(functional_models(layer))
    return out


def is_functional(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model) and "layers" in (layer.get_config() or {})


def _history_names(obj) -> list[str]:
    if isinstance(obj, dict):
        if "keras_history" in obj.get("config", {}):
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _history_names(v)]
    if isinstance(obj, list | tuple):
        return [n for v in obj for n in _history_names(v)]
    return []


@dataclass(frozen=True)
class Graph:
    producers: dict[str, list[str]]  # layer -> the layers feeding it
    consumers: dict[str, list[str]]  # layer -> the layers it feeds
    outputs: frozenset[str]
    calls: dict[str, int]  # layer -> how many times it is called in this graph


def graph_of(model) -> Graph:
    cfg = model.get_config()
    producers, consumers, calls = {}, {}, {}
    for layer in cfg["layers"]:
        name = layer["name"]
        nodes = layer.get("inbound_nodes") or []
        calls[name] = len(nodes)
        producers[name] = _history_names(nodes)
        for p in producers[name]:
            consumers.setdefault(p, []).append(name)
    outs = cfg.get("output_layers", [])
    if outs and isinstance(outs[0], str):  # a single output is stored as one [name, node, tensor]
        outs = [outs]
    outputs = frozenset(o[0] for o in outs)
    return Graph(producers, consumers, outputs, calls)


def layers_by_path(model, prefix: str = "") -> dict:
    out = {}
    for ly in model.layers:
        out[prefix + ly.name] = ly
        if is_functional(ly):
            out.update(layers_by_path(ly, f"{prefix}{ly.name}/"))
    return out
