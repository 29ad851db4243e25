"""An httpx client for sepconv-serve, sync and async, with typed answers."""

from sepconv_client.calls import HealthReport, SepconvError
from sepconv_client.client import AsyncSepconvClient, SepconvClient

__all__ = ["AsyncSepconvClient", "HealthReport", "SepconvClient", "SepconvError"]
