"""placeholder"""
from .core import Model


class ResNeXt(Model):
    pass
