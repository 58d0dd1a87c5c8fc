"""POST /predict: digits from images, in whatever form people send them.

Accepted bodies (the image model is ``?model=<name>``, else a ``model`` form field or JSON key,
else the configured default):

- ``multipart/form-data``: one or more files under any field names;
- a raw image: ``Content-Type: image/*`` or ``application/octet-stream`` (or none);
- JSON: ``{"image": "<base64>"}`` and/or ``{"images": ["<base64>", ...]}``; data URLs are fine.

One image gives one result object; two or more give ``{"results": [...]}`` in request order
("image" first, then "images"; form files in form order, files sharing a field name together).

``?include=input,explanation`` (or an ``include`` form field or JSON key, a list or a comma-
separated string) adds to every result the picture the model saw and an occlusion map
(``service.explanation``).
"""

from __future__ import annotations

from flask import Blueprint, g, request

from service import metrics
from service.api import bodies, config, registry
from service.errors import MalformedRequest, TooLarge
from service.inference import ImageUpload, classify_images
from service.schemas import ImageResult, ImageResults, ImagesJson

blueprint = Blueprint("predict", __name__)

RAW_IMAGE_TYPES = ["image/*", "application/octet-stream"]
ACCEPTED = ["multipart/form-data", "application/json", *RAW_IMAGE_TYPES]


@blueprint.post("/predict")
def predict_digits():
    uploads, model_in_body, include_in_body = _read_uploads()
    name = request.args.get("model") or model_in_body or config().default_image_model
    model = registry().get(name)
    g.model, g.version, g.images = model.name, model.number, len(uploads)
    metrics.IMAGES_PER_REQUEST.observe(len(uploads))
    include = _include_options(request.args.getlist("include") + include_in_body)
    results = [ImageResult.model_validate(result) for result in classify_images(model, uploads, include)]
    return bodies.render(results[0] if len(results) == 1 else ImageResults(results=results))


def _read_uploads() -> tuple[list[ImageUpload], str | None, list[str]]:
    """The images in the request, and the model and include options named inside the body."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        files = list(request.files.items(multi=True))
        if not files:
            raise MalformedRequest("the form holds no files; attach one or more images")
        _check_image_count(len(files))  # before reading any of them
        uploads = [ImageUpload(repr(file.filename or field), file.read()) for field, file in files]
        return uploads, request.form.get("model"), request.form.getlist("include")
    if mimetype.startswith("image/") or mimetype == "application/octet-stream" or (
        mimetype == "" and not _looks_like_json()
    ):
        data = request.get_data()
        if not data:
            raise MalformedRequest("the request body is empty; send an image")
        return [ImageUpload("in the body", data)], None, []
    if bodies.is_json_request():
        body = bodies.parse(ImagesJson, bodies.json_body())
        named = ([('"image"', body.image)] if body.image is not None else []) + [
            (f"images[{index}]", text) for index, text in enumerate(body.images or [])
        ]
        if not named:
            raise MalformedRequest('the JSON body has no "image" or "images"')
        _check_image_count(len(named))  # before decoding any of them
        uploads = [ImageUpload(name, bodies.decode_base64(text, name)) for name, text in named]
        return uploads, body.model, body.include or []
    raise bodies.unsupported(ACCEPTED)


def _include_options(values: list[str]) -> set[str]:
    # "input,explanation", or the option repeated; the inference core checks the names.
    return {name.strip() for value in values for name in value.split(",") if name.strip()}


def _check_image_count(count: int) -> None:
    # A raw body is one image; multipart and JSON are counted here, before anything is decoded.
    limit = config().max_images_per_request
    if count > limit:
        raise TooLarge(f"{count} images in one request; the limit is {limit}")


def _looks_like_json() -> bool:
    return request.get_data()[:64].lstrip().startswith((b"{", b"["))
