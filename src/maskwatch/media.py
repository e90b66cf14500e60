"""Which file names are images and which are videos. Standard library only: folder listings read these files,
and reports and copies are never written over them."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


def is_image_path(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_media_path(path: Path) -> bool:
    """An image or a video by its name: what a report must never be written over."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
