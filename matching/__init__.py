"""Record matching for the customer MDM hub: blocking keys, a Splink 5 model and a fast evaluator.

Imports nothing of the hub; works on standardised records (snake_case attributes, str or None).
See matching/README.md.
"""
from .blocking import blocking_keys
from .cluster import predict_clusters
from .features import ATTRIBUTES, Prepared
from .model import Explanation, MatchModel, Score
from .train import train

__all__ = ["ATTRIBUTES", "blocking_keys", "MatchModel", "Prepared", "Score", "Explanation", "train",
           "predict_clusters"]
