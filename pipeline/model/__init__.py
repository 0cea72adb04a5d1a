"""The networks and what trains them: ResNet + regression/RvC heads, the losses of eq. 4 and eq. 7,
and the checkpoint schema (one builder and reader for every stage)."""
