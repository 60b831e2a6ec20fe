"""Online experiments between registered versions: A/B, rollouts and bandits (see spec.py)."""
