"""ScopeWatch model: task table, registry, input contract, network, checkpoints, batch inference.

    from model import create_model, list_models, load_checkpoint, load_predictor
    predictor = load_predictor()            # shipped weights, CUDA when present
    [p] = predictor.predict([rgb_frame])    # p.probabilities, p.severities, p.quality
"""
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.decision import Decision
from model.factory import create_model, list_models
from model.predict import Prediction, Predictor, load_predictor

__all__ = ["CheckpointError", "Decision", "Prediction", "Predictor", "create_model", "list_models", "load_checkpoint",
           "load_predictor", "save_checkpoint"]
