"""The Open Inference Protocol's bodies (KServe v2 REST), and Triton's model configuration.

Field names are the protocol's own (``model_name``, ``datatype``, ``binary_data_size``...), so
these classes read oddly beside the rest of the API on purpose: clients parse them by name.
"Model" here means a network, as everywhere in this project; these classes are schemas.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

# A parameter value: the protocol allows a bool, a number or a string.
Parameters = dict[str, Any]


class ProtocolSchema(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ProtocolError(ProtocolSchema):
    """Every error under ``/v2``: the protocol's shape, which its clients parse."""

    error: str = Field(description="What happened, what was expected and how to fix it")


class ServerMetadata(ProtocolSchema):
    name: str
    version: str
    extensions: list[str]


class ServerLive(ProtocolSchema):
    live: bool


class ServerReady(ProtocolSchema):
    ready: bool


class ModelReady(ProtocolSchema):
    name: str
    ready: bool


class TensorMetadata(ProtocolSchema):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (the batch dimension)")


class ModelMetadataResponse(ProtocolSchema):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


# Requests: unknown fields are ignored (KServe sends ``model_name``), known ones are strict.


class RequestInput(ProtocolSchema):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: Parameters | None = None
    # Flat or nested, row-major; absent when the tensor travels as binary data.
    data: Any = None


class RequestOutput(ProtocolSchema):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    name: StrictStr
    parameters: Parameters | None = None


class InferRequest(ProtocolSchema):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    id: StrictStr | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(ProtocolSchema):
    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    # Absent when the tensor follows the JSON as binary data (``binary_data_size``).
    data: list[float] | list[str] | None = None


class InferResponse(ProtocolSchema):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


# Triton's GET /v2/models/{name}/config: the fields perf_analyzer and tritonclient read.


class TritonTensorConfig(ProtocolSchema):
    name: str
    data_type: str = Field(description="TYPE_FP32, ...")
    dims: list[int] = Field(description="Without the batch dimension (max_batch_size > 0)")
    format: str | None = None


class TritonDynamicBatching(ProtocolSchema):
    max_queue_delay_microseconds: int


class TritonModelConfig(ProtocolSchema):
    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="The most images one request may carry")
    input: list[TritonTensorConfig]
    output: list[TritonTensorConfig]
    version_policy: dict[str, Any]
    dynamic_batching: TritonDynamicBatching
