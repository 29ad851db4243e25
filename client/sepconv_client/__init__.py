"""An httpx client for sepconv-serve, sync and async, with typed answers."""

from sepconv_client.client import AsyncSepconvClient, SepconvClient, SepconvError

__all__ = ["AsyncSepconvClient", "SepconvClient", "SepconvError"]
