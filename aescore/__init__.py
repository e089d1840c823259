"""aescore: judge the aesthetic quality of photographs (MPA and RGNet on timm backbones)."""

__version__ = "0.1.0"
