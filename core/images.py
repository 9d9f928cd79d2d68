"""The image decoders the service lets PIL use, for request images and datasets
alike: the common formats only. PIL can open many more (EPS through Ghostscript,
among others), each a parser of untrusted bytes that no user needs here."""

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
