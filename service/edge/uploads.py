"""Reading uploaded images from a request: multipart field ``file``/``files`` or a raw body."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from service.edge.content_types import MULTIPART, is_raw_image, media_type
from service.errors import (
    ApiError,
    empty_body,
    invalid_multipart,
    missing_file,
    too_many_files,
    unsupported_media_type,
)

# Form parsing limits: nothing legitimate needs more, and thousands of empty fields or a huge
# text field must not cost memory or time.
MAX_FORM_FIELDS = 16
MAX_PART_BYTES = 64 * 1024
# Enough of a client's file name to recognise it in an error, never a whole header's worth.
MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class UploadedImage:
    """One uploaded file: its bytes and the name the client gave it (None for a raw body)."""

    data: bytes
    name: str | None = None


async def _form_files(request: Request, field: str, max_files: int) -> list[UploadedImage]:
    try:
        # One file over the limit still parses, so the answer can name the real limit.
        form = await request.form(
            max_files=max_files + 1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_PART_BYTES
        )
    except (ApiError, ClientDisconnect):
        raise
    except Exception as error:  # malformed multipart of any kind is the client's mistake
        message = str(getattr(error, "detail", None) or "malformed multipart body")
        if "too many files" in message.lower():
            raise too_many_files(max_files) from None
        raise invalid_multipart(message) from None
    try:
        uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
        others = [k for k, v in form.multi_items() if isinstance(v, UploadFile) and k != field]
        if not uploads:
            hint = f" (found file field {others[0][:40]!r})" if others else ""
            raise missing_file(
                f"no file in multipart field {field!r}{hint}; send the image as {field}=@image.jpg"
            )
        if len(uploads) > max_files:
            raise too_many_files(max_files)
        return [
            UploadedImage(await upload.read(), (upload.filename or "")[:MAX_NAME_CHARS] or None)
            for upload in uploads
        ]
    finally:
        await form.close()


async def read_images(request: Request, *, field: str, max_files: int) -> list[UploadedImage]:
    """The uploaded images' bytes, from multipart ``field`` or an ``image/*`` raw body."""
    content_type = media_type(request.headers.get("content-type", ""))
    if content_type == MULTIPART:
        return await _form_files(request, field, max_files)
    if is_raw_image(content_type):
        body = await request.body()
        if not body:
            raise empty_body()
        return [UploadedImage(body)]
    if not content_type:
        body = await request.body()
        if not body:
            raise missing_file(
                f"no image sent; POST multipart field {field!r} or a raw body "
                "with Content-Type image/*"
            )
    raise unsupported_media_type(
        f"Content-Type {content_type[:80] or 'missing'!r} is not accepted; send "
        f"multipart/form-data with field {field!r} or a raw body with Content-Type image/*"
    )


async def read_one_image(request: Request, field: str = "file") -> bytes:
    """Exactly one image; two files to a single-image endpoint are refused."""
    return (await read_images(request, field=field, max_files=1))[0].data
