"""One module per layer: its table, its fields, its published properties.

``LAYERS`` lists them in load order (parents before children, people before their duties).
"""

from spatial.errors import NotFound
from spatial.layers import (
    communities,
    generations,
    grids,
    illegal_buildings,
    incidents,
    markets,
    operations,
    organisation,
    rivers,
    stalls,
    streets,
    subdistricts,
)
from spatial.layers.base import Layer

LAYERS: tuple[Layer, ...] = (
    generations.layer,
    subdistricts.layer,
    communities.layer,
    grids.layer,
    streets.layer,
    rivers.layer,
    organisation.squads,
    organisation.people,
    organisation.duties,
    markets.layer,
    stalls.layer,
    illegal_buildings.layer,
    operations.layer,
    incidents.layer,
)

BY_NAME = {layer.name: layer for layer in LAYERS}

# Layers published at /v1/layers (people and duties carry phone numbers and are not public).
PUBLIC = tuple(name for name in BY_NAME if name not in {"people", "duties", "boundary_generations"})


def layer_named(name: str) -> Layer:
    """Return the layer called ``name``, or raise NotFound listing the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise NotFound(f"no layer named {name!r}; known layers: {', '.join(BY_NAME)}") from None
