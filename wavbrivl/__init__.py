"""wavbrivl: put audio into the embedding space of a frozen open_clip model (WavBriVL)."""
from .audio import AudioError, load_audio
from .model import WavBriVL, WavBriVLConfig
from .pipeline import WavBriVLPipeline

__all__ = ["AudioError", "load_audio", "WavBriVL", "WavBriVLConfig", "WavBriVLPipeline"]
__version__ = "0.1.0"
