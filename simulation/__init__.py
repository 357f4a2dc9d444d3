"""Log simulator: a synthetic e-commerce world whose raw logs follow schemas/raw_logs.yaml.

    from simulation import SimulationConfig, simulate
    summary = simulate("/tmp/logs", SimulationConfig(users=2000, days=14, seed=0))
"""

from simulation.simulator import LOGS, simulate
from simulation.world import SimulationConfig, World, build_world

__all__ = ["LOGS", "SimulationConfig", "World", "build_world", "simulate"]
