"""Pure domain logic: coordinates, JSON paths, the spec walker and markers."""
