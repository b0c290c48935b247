"""Chaos run: the whole stack on the simulator under faults and kills, then money checks."""
